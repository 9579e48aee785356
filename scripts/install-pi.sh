#!/usr/bin/env bash
# Installs (or upgrades) cabinet-agent on Raspberry Pi OS / Debian 12 from this checkout.
#
#   sudo scripts/install-pi.sh [--device ID] [--site SITE]     install or upgrade
#   sudo scripts/install-pi.sh --uninstall                     remove the software, keep the record
#
# Safe to run again: the configuration, the device key, the TLS files and the outbox are
# never overwritten or removed. The unit is enabled but only started once `check-config`
# passes, so a half-configured cabinet is never started (it would stop at once, exit 78).
#
# For tests: --prefix DIR installs into DIR as if it were / (no service is started, no
# check run), --no-apt skips the Debian packages, --extras LIST picks pip extras
# (default: pcsc), --dry-run prints what would be done and changes nothing.
set -euo pipefail
umask 022   # the venv and the config must be readable by the service user

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/
DEVICE=""
SITE=""
APT=1
DRY=0
UNINSTALL=0
EXTRAS=pcsc
USER_NAME=cabinet-agent
DEBS=(python3 python3-venv python3-dev gcc swig libpcsclite-dev pcscd libccid systemd ca-certificates openssl)

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "install-pi: $*" >&2; exit 1; }
say() { echo "install-pi: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
        --device) DEVICE="${2:?--device needs an id}"; shift 2 ;;
        --site) SITE="${2:?--site needs a name}"; shift 2 ;;
        --extras) EXTRAS="${2-}"; shift 2 ;;
        --no-apt) APT=0; shift ;;
        --dry-run) DRY=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install-pi: unknown option $1" >&2; usage 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || [ "$DRY" = 1 ] || die "run as root (sudo $0)"
ROOT="$(realpath -m "$PREFIX")"
R="${ROOT%/}"                           # "" for the real root: "$R/etc" is /etc
OPT="$R/opt/cabinet-agent"
VENV="$OPT/venv"
ETC="$R/etc/cabinet-agent"
STATE="$R/var/lib/cabinet-agent"
UNIT="$R/etc/systemd/system/cabinet-agent.service"
# A booted systemd manages services; in a chroot, a container or a prefix it does not.
LIVE=0
[ -z "$R" ] && [ -d /run/systemd/system ] && LIVE=1

run() {
    if [ "$DRY" = 1 ]; then printf 'would run:'; printf ' %q' "$@"; echo; else "$@"; fi
}

# --- uninstall: the software goes, the record stays ---------------------------------------
if [ "$UNINSTALL" = 1 ]; then
    if [ "$LIVE" = 1 ]; then
        run systemctl disable --now cabinet-agent.service || true
    elif [ -e "$UNIT" ]; then
        run systemctl --root="$ROOT" disable cabinet-agent.service || true
    fi
    run rm -rf "$OPT"
    run rm -f "$UNIT" "$R/etc/sysusers.d/cabinet-agent.conf" "$R/etc/tmpfiles.d/cabinet-agent.conf"
    [ "$LIVE" = 1 ] && run systemctl daemon-reload
    say "removed the software ($OPT, the unit)."
    say "kept the record and the identity: $STATE (device key, outbox), $ETC (agent.toml, TLS),"
    say "and the user $USER_NAME that owns them. Delete those only once the record is archived."
    exit 0
fi

# --- 1. Debian packages ---------------------------------------------------------------------
if [ "$APT" = 1 ]; then
    wanted=("${DEBS[@]}")
    # gpiozero's pin driver on Bookworm (the only one that works on a Pi 5); Raspberry Pi
    # OS has it, plain Debian does not (and has no GPIO header to drive).
    if apt-cache show python3-lgpio >/dev/null 2>&1; then wanted+=(python3-lgpio); fi
    missing=()
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "Debian packages: ${missing[*]}"
        run apt-get update -qq
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"
    fi
fi

# --- 2. the agent in its own venv under /opt -------------------------------------------------
# --system-site-packages: the venv sees Debian's python3-lgpio (a C library binding).
[ -x "$VENV/bin/python" ] || run python3 -m venv --system-site-packages "$VENV"
# Build from a clean copy: setuptools leaves build/ in a source tree and reuses it, so a
# module deleted upstream would live on in the next upgrade.
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
tar -C "$SRC" --exclude=./.venv --exclude=./build --exclude=./.git --exclude='*.egg-info' \
    --exclude=__pycache__ -cf - . | tar -C "$STAGE" -xf -
spec="$STAGE"
[ -n "$EXTRAS" ] && spec="$STAGE[$EXTRAS]"
# --force-reinstall of the agent only (not its pinned dependencies): an upgrade from a
# checkout whose version number did not change still replaces the code.
run "$VENV/bin/pip" install -q --disable-pip-version-check "$spec"
run "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$STAGE"
run install -D -m 0644 "$SRC/docs/install-pi.md" "$OPT/docs/install-pi.md"

# --- 3. the system user (and its device groups) ----------------------------------------------
run install -D -m 0644 "$SRC/systemd/cabinet-agent.sysusers.conf" "$R/etc/sysusers.d/cabinet-agent.conf"
run install -D -m 0644 "$SRC/systemd/cabinet-agent.tmpfiles.conf" "$R/etc/tmpfiles.d/cabinet-agent.conf"
run systemd-sysusers --root="$ROOT" "$R/etc/sysusers.d/cabinet-agent.conf"
run systemd-tmpfiles --root="$ROOT" --create "$R/etc/tmpfiles.d/cabinet-agent.conf"
if [ "$DRY" = 1 ]; then
    uid=UID; gid=GID
else
    uid="$(awk -F: -v u="$USER_NAME" '$1 == u {print $3}' "$R/etc/passwd")"
    gid="$(awk -F: -v u="$USER_NAME" '$1 == u {print $4}' "$R/etc/passwd")"
    [ -n "$uid" ] || die "systemd-sysusers did not create $USER_NAME"
fi

# --- 4. configuration skeleton (never overwritten) and the private state directory ----------
run install -d -m 0755 -o 0 -g 0 "$ETC"
run install -d -m 0750 -o 0 -g "$gid" "$ETC/tls"
if [ -e "$ETC/agent.toml" ]; then
    say "kept $ETC/agent.toml (never overwritten)"
else
    host="$(hostname -s 2>/dev/null || cat "$R/etc/hostname" 2>/dev/null || echo cabinet)"
    device="${DEVICE:-$(printf %s "$host" | tr -c 'A-Za-z0-9._-' '-')}"
    site="${SITE:-unassigned}"
    [[ "$device" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "--device: letters, digits, . _ - only"
    [[ "$site" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "--site: letters, digits, . _ - only"
    if [ "$DRY" = 1 ]; then
        echo "would write $ETC/agent.toml (device $device, site $site)"
    else
        sed -e "s/@DEVICE@/$device/" -e "s/@SITE@/$site/" \
            "$SRC/config/examples/agent-skeleton.toml" > "$ETC/agent.toml.tmp"
        chmod 0644 "$ETC/agent.toml.tmp"
        mv "$ETC/agent.toml.tmp" "$ETC/agent.toml"
        say "wrote $ETC/agent.toml (device $device, site $site)"
    fi
fi
run install -d -m 0700 -o "$uid" -g "$gid" "$STATE"

# On a Raspberry Pi the firmware drives the lock relay and the other output lines of the
# skeleton's wiring low from the first moment of boot, before Linux and the agent run.
BOOT_CONFIG="$R/boot/firmware/config.txt"
EARLY_LOW="gpio=12,16,24,25,26=op,dl"
if [ -f "$BOOT_CONFIG" ] && ! grep -qx "$EARLY_LOW" "$BOOT_CONFIG"; then
    if [ "$DRY" = 1 ]; then
        echo "would add $EARLY_LOW to $BOOT_CONFIG"
    else
        printf '# cabinet-agent: output lines low from power-on (lock relay GPIO 24)\n%s\n' \
            "$EARLY_LOW" >> "$BOOT_CONFIG"
        say "added $EARLY_LOW to $BOOT_CONFIG (takes effect at the next boot)"
    fi
fi

# --- 5. the device key: created once, never replaced ------------------------------------------
KEY="$STATE/device.key"
if [ "$DRY" = 1 ]; then
    echo "would create $KEY unless it exists, and print its public key"
    pubkey="(dry run)"
elif [ -e "$KEY" ]; then
    pubkey="$("$VENV/bin/python" - "$KEY" <<'PY'
import sys
from pathlib import Path

from agent.wire.key_files import read_key

print(read_key(Path(sys.argv[1])).public.to_text())
PY
)"
    say "kept the device key $KEY"
else
    pubkey="$(umask 077 && "$VENV/bin/cabinet-agent" keygen --out "$KEY" | sed -n 's/^pubkey //p')"
    chown "$uid:$gid" "$KEY"
    say "created the device key $KEY"
fi

# --- 6. the unit: installed and enabled, started only once check-config passes --------------
run install -D -m 0644 "$SRC/systemd/cabinet-agent.service" "$UNIT"
if [ "$LIVE" = 1 ]; then
    run systemctl daemon-reload
    run systemctl enable cabinet-agent.service
else
    run systemctl --root="$ROOT" enable cabinet-agent.service
fi

checked=skipped
if [ "$DRY" = 0 ] && [ -z "$R" ]; then
    if runuser -u "$USER_NAME" -- "$VENV/bin/cabinet-agent" check-config /etc/cabinet-agent/agent.toml; then
        checked=ok
    else
        checked=failed
    fi
fi
if [ "$LIVE" = 1 ] && [ "$checked" = ok ]; then
    if systemctl is-active -q cabinet-agent.service; then
        run systemctl restart cabinet-agent.service && say "restarted cabinet-agent (upgrade)"
    else
        run systemctl start cabinet-agent.service && say "started cabinet-agent"
    fi
elif [ "$LIVE" = 1 ] && systemctl is-active -q cabinet-agent.service; then
    say "cabinet-agent still runs the previous version: fix what check-config lists, then"
    say "sudo systemctl restart cabinet-agent"
fi

# --- 7. what the installer does next --------------------------------------------------------
version="$("$VENV/bin/cabinet-agent" --version 2>/dev/null || echo "cabinet-agent (dry run)")"
cat <<EOF

Installed: $version in $VENV
Configuration: $ETC/agent.toml   State (key, outbox): $STATE
Device public key (register it at the centre, read it out to a second person):
  pubkey $pubkey

Next steps (/opt/cabinet-agent/docs/install-pi.md):
  1. Check the wiring against the table in the doc (fail-secure lock relay, NC loops).
  2. Fill in /etc/cabinet-agent/agent.toml and put the TLS files in /etc/cabinet-agent/tls/;
     check-config lists exactly what is left:
       sudo -u $USER_NAME /opt/cabinet-agent/venv/bin/cabinet-agent check-config /etc/cabinet-agent/agent.toml
  3. At the centre: cabinetctl device add <device> --pubkey $pubkey --site <site>
  4. sudo systemctl start cabinet-agent, then the acceptance checks of the doc.
EOF
case "$checked" in
    ok) say "check-config passed" ;;
    failed) say "not started: check-config found what is left to fill in (above)" ;;
    *) say "check-config not run (prefix or dry run)" ;;
esac
