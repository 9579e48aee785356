#!/usr/bin/env bash
# The simulated-cabinet demo: the real agent (rules, signed outbox, MQTT uplink) on a
# simulated cabinet plays a scene, and `cabinetctl watch` shows every event verified
# and every alarm highlighted. No hardware, no prompts; cleans up on exit or Ctrl-C.
#   DEMO_SPEED (default 10)  how many times faster than life the scene plays
#   DEMO_SCENARIO            another scenario file (the format of examples/scenarios/*.jsonl)
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

broker=""
if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then
    port="$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
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
    sleep 1
fi

"$BIN/cabinet-agent" run --config config/examples/sim.toml --policy examples/policy.toml \
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
