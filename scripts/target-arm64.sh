#!/usr/bin/env bash
# `scripts/test.sh --target arm64`: the install on the processor the cabinet runs on.
#
# Builds (once, then cached) a Debian 12 arm64 root with debootstrap and runs it under
# qemu-user (binfmt), then, in a fresh copy of it, from this checkout:
#   1. scripts/install-pi.sh                      (Debian packages, pyscard build, user, key, unit)
#   2. check-config on the installed skeleton     (must list exactly what is left to fill in)
#   3. every example scenario replayed on aarch64 and piped into `cabinetctl verify -`
#      (this host's: a cabinet installs the agent without the centre's packages)
#   4. the signing path across processors         (aarch64 signatures verified on this host)
#   5. a short `cabinet-agent run` of the simulated cabinet, as the service user, against
#      a mosquitto on this host; what it published verifies; its peak RSS is measured
#   6. systemd-analyze verify of the installed unit
#   7. install-pi.sh again (upgrade): config, device key and outbox unchanged
# Needs root, debootstrap, qemu-user-static, mosquitto (+ mosquitto-clients) and .venv.
#   CABINET_TARGET_CACHE   cache directory (default /var/cache/cabinet-agent-target)
#   CABINET_TARGET_MIRROR  Debian mirror (default: the first one this host's apt uses)
#   CABINET_TARGET_KEEP=1  keep the run's root for a look afterwards
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${CABINET_TARGET_CACHE:-/var/cache/cabinet-agent-target}"
BASE="$CACHE/bookworm-arm64-minbase.tar"
DEVICE=cab-arm64
AGENT=/opt/cabinet-agent/venv/bin/cabinet-agent
# The centre's tool, from this host's venv (the cabinet has not the `central` extra).
CTL="$SRC/.venv/bin/cabinetctl"
# What the fresh skeleton lacks: the centre's key and broker, the TLS files; and, on plain
# Debian only, gpiozero's pin library (python3-lgpio is a Raspberry Pi OS package).
EXPECTED_LEFT="keys.central_pubkey broker.url broker.ca_file broker.cert_file broker.key_file hardware.gpio.pin_factory"

die() { echo "target-arm64: FAILED: $*" >&2; exit 1; }
say() { echo "== $*"; }
TIMINGS=()
timed() {  # timed NAME command...: run, record the wall time
    local name="$1" start end
    shift
    start="$(date +%s.%N)"
    "$@"
    end="$(date +%s.%N)"
    TIMINGS+=("$(printf '| %s | %.1f s |' "$name" "$(echo "$end - $start" | bc)")")
}

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, mounts)"
for tool in debootstrap qemu-aarch64-static bc; do
    command -v "$tool" >/dev/null || die "$tool missing: apt-get install debootstrap qemu-user-static bc"
done
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
[ -x "$MOSQUITTO" ] && command -v mosquitto_sub >/dev/null \
    || die "mosquitto missing: apt-get install mosquitto mosquitto-clients"
[ -x "$SRC/.venv/bin/cabinetctl" ] || die "no .venv: run scripts/test.sh once first"

# --- qemu-user through binfmt_misc (no systemd here to register it) ----------------------
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi

# --- the cached base root -----------------------------------------------------------------
mirror="${CABINET_TARGET_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
    [ -n "$mirror" ] || mirror="$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
fi
mkdir -p "$CACHE/apt-archives/partial"
build_base() {
    rm -rf "$CACHE/base.tmp"
    debootstrap --arch=arm64 --variant=minbase bookworm "$CACHE/base.tmp" "$mirror" \
        > "$CACHE/debootstrap.log" 2>&1 || die "debootstrap: see $CACHE/debootstrap.log"
    tar -C "$CACHE/base.tmp" -cf "$BASE.tmp" . && mv "$BASE.tmp" "$BASE"
    rm -rf "$CACHE/base.tmp"
}
if [ -f "$BASE" ]; then
    say "base root: cached ($BASE)"
else
    say "base root: debootstrap bookworm arm64 from $mirror (minutes)"
    timed "debootstrap (once, then cached)" build_base
fi

# --- a fresh root for this run --------------------------------------------------------------
WORK="$(mktemp -d "$CACHE/run.XXXXXX")"
ROOT="$WORK/root"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for mount in var/cache/apt/archives dev/pts dev proc; do
        mountpoint -q "$ROOT/$mount" && umount -l "$ROOT/$mount"
    done
    if [ "${CABINET_TARGET_KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$BASE"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mkdir -p "$ROOT/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/"
# The root's own ca-certificates package rebuilds that bundle; pip keeps using this host's
# (which may hold a proxy's CA) through PIP_CERT.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca-bundle.crt"
# Package scripts must not start services in a chroot (the Debian convention).
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d" && chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
mount --bind /proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives"  # downloads only
mkdir -p "$ROOT/src/cabinet-agent"
git -C "$SRC" ls-files -z -co --exclude-standard \
    | tar -C "$SRC" --null -T - -cf - | tar -C "$ROOT/src/cabinet-agent" -xf -
# env -i: this host's pip settings point at files the root does not have.
in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 PIP_CERT=/etc/ssl/host-ca-bundle.crt "$@"
}
[ "$(in_root uname -m)" = aarch64 ] || die "the root does not run as aarch64"

# --- 1. the install -------------------------------------------------------------------------
say "1. scripts/install-pi.sh in the arm64 root"
install_once() {
    in_root bash /src/cabinet-agent/scripts/install-pi.sh --device "$DEVICE" --site target \
        > "$WORK/$1.log" 2>&1 || { tail -40 "$WORK/$1.log"; die "install-pi.sh ($1)"; }
}
timed "install-pi.sh, first run (apt, venv, pyscard build, user, key, unit)" install_once install
tail -16 "$WORK/install.log"
pubkey="$(sed -n 's/^  pubkey //p' "$WORK/install.log")"
[ -n "$pubkey" ] || die "the installer printed no device public key"
in_root "$AGENT" --version
in_root /opt/cabinet-agent/venv/bin/python -c \
    'import platform, nacl, smartcard; assert platform.machine() == "aarch64"; print("aarch64: PyNaCl", nacl.__version__, "and pyscard load")'

# --- 2. check-config on the skeleton --------------------------------------------------------
say "2. check-config on the installed skeleton says what is left"
set +e
in_root runuser -u cabinet-agent -- "$AGENT" check-config /etc/cabinet-agent/agent.toml \
    > "$WORK/check.out" 2> "$WORK/check.err"
rc=$?
set -e
cat "$WORK/check.err"
[ "$rc" = 78 ] || die "check-config on the skeleton exited $rc, not 78"
left="$(tail -n +2 "$WORK/check.err" | awk -F': ' '{print $2}' | xargs)"
[ "$left" = "$EXPECTED_LEFT" ] || die "check-config listed [$left], expected [$EXPECTED_LEFT]"

# --- 3 and 4. replay every example scenario, verify; cross-processor signatures ------------
say "3. every example scenario replayed on aarch64 | cabinetctl verify -"
in_root "$AGENT" keygen --out /tmp/replay.key > "$ROOT/tmp/replay.pub"
replay_all() {
    local scenario name
    for scenario in "$ROOT"/src/cabinet-agent/examples/scenarios/*.jsonl; do
        name="$(basename "$scenario")"
        { in_root bash -o pipefail -c "cd /src/cabinet-agent && $AGENT replay \
            examples/scenarios/$name --policy examples/policy.toml --key /tmp/replay.key \
            | tee /tmp/$name.events" | "$CTL" verify - --pubkey "$ROOT/tmp/replay.pub"; } \
            > "$WORK/verify-$name.log" 2>&1 \
            || { cat "$WORK/verify-$name.log"; die "replay | verify of $name"; }
        grep -q "OK" "$WORK/verify-$name.log" || die "verify did not say OK for $name"
        printf '   %-45s %s\n' "$name" "$(tail -1 "$WORK/verify-$name.log")"
    done
}
timed "replay + verify of all $(ls "$SRC"/examples/scenarios/*.jsonl | wc -l) example scenarios" replay_all
say "4. aarch64 signatures verify on this host ($(uname -m))"
cat "$ROOT"/tmp/*.jsonl.events > "$WORK/aarch64-events.jsonl"
for scenario in "$ROOT"/tmp/*.jsonl.events; do
    "$CTL" verify "$scenario" --pubkey "$ROOT/tmp/replay.pub" > /dev/null \
        || die "$(basename "$scenario"): aarch64 signatures do not verify on $(uname -m)"
done
echo "   $(ls "$ROOT"/tmp/*.jsonl.events | wc -l) records signed on aarch64 verify on $(uname -m)"

# --- 5. a short run of the simulated cabinet against a mosquitto on this host ---------------
say "5. cabinet-agent run (simulated cabinet, service user) -> mosquitto on the host"
port="$("$SRC/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
printf 'user root\npersistence false\nlog_dest stderr\nlistener %s 127.0.0.1\nallow_anonymous true\n' \
    "$port" > "$WORK/mosquitto.conf"
"$MOSQUITTO" -c "$WORK/mosquitto.conf" 2> "$WORK/mosquitto.log" &
pids+=($!)
for _ in $(seq 100); do  # until the broker accepts a connection
    mosquitto_pub -h 127.0.0.1 -p "$port" -t probe -m up 2>/dev/null && break
    sleep 0.1
done
mosquitto_sub -h 127.0.0.1 -p "$port" -q 1 -t "cabinet/target/$DEVICE/evt/#" > "$WORK/published.jsonl" &
pids+=($!)
cat > "$ROOT/tmp/sim.toml" <<EOF
device = "$DEVICE"
site = "target"
state_dir = "/var/lib/cabinet-agent"
log_format = "json"
[broker]
url = "mqtt://127.0.0.1:$port"
[hardware.sim]
enabled = true
EOF
chmod 0644 "$ROOT/tmp/sim.toml"
short_run() {
    # setpriv execs (no PAM child), so the watched pid is the agent itself; under
    # qemu-user its RSS includes the emulator's own memory (translated code).
    in_root bash -c "setpriv --reuid=cabinet-agent --regid=cabinet-agent --init-groups \
        $AGENT run --config /tmp/sim.toml --policy /src/cabinet-agent/examples/policy.toml \
        --scenario /src/cabinet-agent/examples/scenarios/two_person_withdrawal.jsonl \
        --speed 20 --exit-after-scenario 20 2> /tmp/run.log &
        pid=\$!; hwm=0
        while kill -0 \$pid 2>/dev/null; do
            now=\$(awk '/^VmHWM/ {print \$2}' /proc/\$pid/status 2>/dev/null); hwm=\${now:-\$hwm}
            grep -q daemon.ready /tmp/run.log && [ ! -e /tmp/ready.at ] && date +%s.%N > /tmp/ready.at
            sleep 0.2
        done
        wait \$pid; rc=\$?; echo \$hwm > /tmp/run.hwm; exit \$rc" \
        || { tail -20 "$ROOT/tmp/run.log"; die "cabinet-agent run exited non-zero"; }
}
run_start="$(date +%s.%N)"
timed "cabinet-agent run: start, scenario at 20x, clean stop" short_run
ready_s="$(echo "$(cat "$ROOT/tmp/ready.at") - $run_start" | bc)"
rss_kib="$(cat "$ROOT/tmp/run.hwm")"
events="$("$CTL" verify "$ROOT/var/lib/cabinet-agent/outbox.db" --pubkey "$pubkey" \
    | tee "$WORK/outbox-verify.log" | grep -o '^[0-9]*' || true)"
[ -n "$events" ] || { cat "$WORK/outbox-verify.log"; die "the agent's outbox does not verify"; }
for _ in $(seq 300); do
    [ "$(wc -l < "$WORK/published.jsonl")" -ge "$events" ] && break
    sleep 0.1
done
[ "$(wc -l < "$WORK/published.jsonl")" -ge "$events" ] \
    || die "mosquitto got $(wc -l < "$WORK/published.jsonl") of $events events"
"$CTL" verify "$WORK/published.jsonl" --pubkey "$pubkey" \
    || die "what the aarch64 agent published does not verify"
files_ok="$(find "$ROOT/var/lib/cabinet-agent" -mindepth 1 \! -perm 0600 -print)"
[ -z "$files_ok" ] || die "state files not 0600: $files_ok"
echo "   ready after $(printf %.1f "$ready_s") s; peak RSS $((rss_kib / 1024)) MiB; $events events published and verified"

# --- 6. the unit as systemd reads it ------------------------------------------------------
say "6. systemd-analyze verify of the installed unit"
timed "systemd-analyze verify" in_root systemd-analyze verify /etc/systemd/system/cabinet-agent.service
in_root test -L /etc/systemd/system/multi-user.target.wants/cabinet-agent.service || die "unit not enabled"

# --- 7. upgrade: a second run changes nothing it must keep ------------------------------
say "7. install-pi.sh again (upgrade) keeps config, key and outbox"
keep() {
    (cd "$ROOT" && find etc/cabinet-agent var/lib/cabinet-agent -type f -print0 | sort -z \
        | xargs -0 stat -c '%n %a %u:%g' && find etc/cabinet-agent var/lib/cabinet-agent -type f \
        -print0 | sort -z | xargs -0 sha256sum)
}
keep > "$WORK/before.txt"
timed "install-pi.sh, second run (upgrade)" install_once upgrade
keep > "$WORK/after.txt"
diff -u "$WORK/before.txt" "$WORK/after.txt" || die "the upgrade changed what it must keep"
[ "$(sed -n 's/^  pubkey //p' "$WORK/upgrade.log")" = "$pubkey" ] || die "the device key changed"
grep -q "kept /etc/cabinet-agent/agent.toml" "$WORK/upgrade.log" || die "agent.toml not reported kept"

say "target arm64: all steps passed"
{
    echo "| step (Debian 12 arm64 under qemu-user on $(uname -m), $(date -u +%F)) | wall time |"
    echo "|---|---|"
    printf '%s\n' "${TIMINGS[@]}"
    echo "| agent ready after start (run, simulated cabinet) | $(printf %.1f "$ready_s") s |"
    echo "| agent peak RSS (VmHWM, includes qemu-user) | $((rss_kib / 1024)) MiB |"
} | tee "$CACHE/last-run.md"
