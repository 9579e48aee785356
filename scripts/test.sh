#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: installs what the tests need
# (Debian packages when root, a venv with the Python deps), then ruff, mypy and pytest.
# Extra arguments go to pytest (e.g. `scripts/test.sh --long tests/torture`).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(mosquitto mosquitto-clients pcscd libpcsclite-dev vsmartcard-vpcd swig socat systemd strace gcc postgresql chromium fonts-noto-cjk)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    for pkg in "${DEBS[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,pcsc]'

# `scripts/test.sh --target arm64`: the install on an emulated Debian 12 arm64 root
# (slow, minutes; not part of the default run). See scripts/target-arm64.sh.
if [ "${1:-}" = --target ]; then
    [ "${2:-}" = arm64 ] || { echo "scripts/test.sh: --target takes arm64" >&2; exit 2; }
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        for pkg in debootstrap qemu-user-static bc; do
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
                || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
        done
    fi
    exec scripts/target-arm64.sh
fi

echo "== ruff";  .venv/bin/ruff check . && .venv/bin/ruff format --check --output-format concise .
echo "== mypy";  .venv/bin/mypy agent config rules drivers firmware_bridge central
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exit 5 = no tests collected (e.g. a filter matched nothing): not a failure.
[ "$rc" = 5 ] && rc=0
exit "$rc"
