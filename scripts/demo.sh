#!/usr/bin/env bash
# The simulated-cabinet demo: the real agent (rules, signed outbox, MQTT uplink) on a
# simulated cabinet plays a scene, `cabinetctl watch` shows every event verified and
# every alarm highlighted, and `cabinet-central serve` stores the verified record and
# serves the web console (its address and a login are printed). No hardware; cleans up
# on exit or Ctrl-C.
#   DEMO_SPEED (default 10)  how many times faster than life the scene plays
#   DEMO_SCENARIO            another scenario file (the format of examples/scenarios/*.jsonl)
#   DEMO_HOLD (default: 1 on a terminal, else 0)  keep the centre and its console running
#                            after the scene until Enter is pressed
set -euo pipefail
cd "$(dirname "$0")/.."
SPEED="${DEMO_SPEED:-10}"
SCENARIO="${DEMO_SCENARIO:-examples/scenarios/demo.jsonl}"

if [ ! -x .venv/bin/cabinet-agent ] || ! .venv/bin/python -c "import agent, central.cli" 2>/dev/null; then
    echo "== setting up .venv (first run only)"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[central]'
fi
BIN=.venv/bin
free_port() {  # a loopback port nothing listens on now
    "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
work="$(mktemp -d "${TMPDIR:-/tmp}/cabinet-demo.XXXXXX")"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export CABINET_STATE_DIR="$work/state"
mkdir -p "$CABINET_STATE_DIR"
"$BIN/cabinet-agent" keygen --out "$CABINET_STATE_DIR/device.key" > "$work/device.pub"
"$BIN/cabinetctl" device add cab-chem-0042 --pubkey "$work/device.pub" --site demo \
    --name "Chem lab 3, cabinet 42 (simulated)" --registry "$work/devices.toml" > /dev/null
# The centre's key signs commands (a remote approval from the console); the cabinet
# believes it because its configuration names the public half.
central_pub="$("$BIN/cabinetctl" keygen --out "$work/central.key" | awk '/^pubkey/ {print $2}')"
sed "s|^device_key = .*|&\ncentral_pubkey = \"$central_pub\"|" config/examples/sim.toml \
    > "$work/agent.toml"

broker=""
if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then
    port="$(free_port)"
    printf 'user root\npersistence false\nlog_dest stderr\nlistener %s 127.0.0.1\nallow_anonymous true\n' \
        "$port" > "$work/mosquitto.conf"
    "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$work/mosquitto.conf" 2> "$work/mosquitto.log" &
    pids+=($!)
    broker="mqtt://127.0.0.1:$port"
    for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    echo "== broker: mosquitto on $broker"
else
    echo "== no mosquitto here (apt-get install mosquitto): running OFFLINE — events stay in"
    echo "   the signed outbox until a broker is reachable; you will see the backlog grow."
    broker="mqtt://127.0.0.1:9"   # nothing listens: the uplink keeps retrying
fi
export CABINET_BROKER_URL="$broker"

echo "== scene: $SCENARIO at ${SPEED}x (a pair takes 25 g of sodium cyanide and returns the"
echo "   bottle; one person alone is refused; a suspended card is refused; VOC rises ->"
echo "   alarm and fan; a door is held open -> alarm)"
if [ -n "${broker##*:9}" ]; then
    view=()
    [ -t 1 ] || view=(--json)
    "$BIN/cabinetctl" watch --broker "$broker" --registry "$work/devices.toml" "${view[@]}" &
    pids+=($!)
    # The centre: the same stream, verified into its SQLite record, and the web console.
    mkdir -p "$work/central/policies"
    cp examples/policy.toml "$work/central/policies/"
    http_port="$(free_port)"
    cat > "$work/central.toml" <<TOML
registry = "$work/devices.toml"
central_key = "$work/central.key"
policies = "$work/central/policies"
time_zone = "Asia/Shanghai"
state_dir = "$work/central"
[broker]
url = "$broker"
[http]
listen = "127.0.0.1:$http_port"
TOML
    echo "cabinet-demo" | "$BIN/cabinet-central" user add wang --person p-1003 \
        --role safety_officer --password-stdin --config "$work/central.toml" > /dev/null
    "$BIN/cabinet-central" serve --config "$work/central.toml" 2> "$work/central.log" &
    pids+=($!)
    console="http://127.0.0.1:$http_port"
    "$BIN/python" - "$console/api/health" <<'PY' || { echo "== the centre did not start:"; cat "$work/central.log"; exit 1; }
import sys, time, urllib.request
for _ in range(300):  # 30 s: the first start migrates the database
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=1) as answer:
            if answer.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
    echo "== centre: cabinet-central serve, web console on $console/"
    echo "   (login wang / cabinet-demo: Wang Fang, keeper and safety officer)"
fi

"$BIN/cabinet-agent" run --config "$work/agent.toml" --policy examples/policy.toml \
    --scenario "$SCENARIO" --speed "$SPEED" --exit-after-scenario 10 2> "$work/agent.log" || {
    echo "== the agent failed; its log:"; cat "$work/agent.log"; exit 1; }
sleep 1
echo
echo "== the cabinet's own record, checked by an independent verifier:"
"$BIN/cabinetctl" verify "$CABINET_STATE_DIR/outbox.db" --pubkey "$work/device.pub"
echo "== uplink backlog when the agent stopped:"
"$BIN/python" -c "
import sqlite3, sys
db = sqlite3.connect('file:$CABINET_STATE_DIR/outbox.db?mode=ro', uri=True)
print('  ', db.execute('select count(*) from events where sent = 0').fetchone()[0], 'unsent of',
      db.execute('select count(*) from events').fetchone()[0])"
if [ -n "${console:-}" ]; then
    echo "== the centre's verified record (GET $console/api/cabinets and /api/alarms):"
    token="$("$BIN/cabinet-central" token create wang --config "$work/central.toml" | tail -n 1)"
    "$BIN/python" - "$console" "$token" <<'PY'
import json, sys, urllib.request
base, token = sys.argv[1], sys.argv[2].split()[-1]
def get(path):
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)
for cabinet in get("/api/cabinets"):
    print(f"   {cabinet['device']}: {cabinet['last_seq']} events stored and verified,"
          f" {cabinet['open_alarms']} alarm(s) open")
for alarm in get("/api/alarms?state=all"):
    state = "cleared: " + (alarm["clear_reason"] or "") if alarm["cleared_ms"] else "OPEN"
    print(f"   alarm {alarm['alarm']} {alarm['kind']} ({state})")
PY
    hold="${DEMO_HOLD:-}"
    [ -n "$hold" ] || { [ -t 0 ] && [ -t 1 ] && hold=1 || hold=0; }
    if [ "$hold" = 1 ]; then
        echo "== the console stays up on $console/ (login wang / cabinet-demo); Enter stops the demo"
        read -r _ || true
    fi
fi
