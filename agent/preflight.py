"""The checks `run` makes before it starts anything, shared word for word with `check-config`.

The unit does not restart the agent after a refusal (exit 78), so the installer learns of
one only from `systemctl status`; `check-config` must refuse exactly what `run` would:
both call `check_before_start` and print its `ConfigError` the same way (exit 78).
Nothing here changes the disk; `prepare_state_dir` is the one step that does, and only
`run` calls it.

Decisions (docs/install-pi.md, "Checks"):
- A real cabinet (anything but the simulated one) needs its device key provisioned and
  the centre's public key; the simulated cabinet mints its own key and may run keyless.
- The state directory and every file in it are private to the agent's user. `run`
  creates them that way (umask 077) and tightens looser modes it finds, with a warning;
  `check-config` only warns, since it may run as another user. A device key readable by
  others is refused outright: it may already have been copied.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path

from agent.wire import VerifyKey, WireError
from agent.wire.key_files import KeyFileError, read_key
from config.agent import AgentConfig
from config.loading import ConfigError, Problem, locate

PLACEHOLDER_TLD = ".invalid"  # RFC 2606: never resolves, so it marks "fill this in"
OUTBOX_FILE = "outbox.db"
PIN_FACTORY_MODULES = {
    "lgpio": ("lgpio", "python3-lgpio"),
    "rpigpio": ("RPi.GPIO", "python3-rpi.gpio"),
}


@dataclass
class Findings:
    source: str
    text: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, key: str, message: str) -> None:
        loc = tuple(key.split(".")) if key else ()
        line = locate(self.text, loc) if self.text and loc else None
        self.problems.append(Problem(key, message, line))


def check_before_start(config: AgentConfig, config_file: Path) -> list[str]:
    """Every start-up check of `run`; raises ConfigError listing all problems, else warnings."""
    try:
        text = config_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""  # already read once by the loader; line numbers are a nicety
    found = Findings(str(config_file), text)
    _state_dir(config, found)
    _device_key(config, found)
    _central_key(config, found)
    _broker(config, found)
    _hardware(config, found)
    if found.problems:
        raise ConfigError(found.source, found.problems)
    return found.warnings


def _state_dir(config: AgentConfig, found: Findings) -> None:
    state = config.state_dir
    if state.exists():
        if not state.is_dir():
            found.problem("state_dir", f"{state} is not a directory")
            return
        if not os.access(state, os.W_OK | os.X_OK):
            found.problem("state_dir", f"{state} is not writable by this user (uid {os.getuid()})")
            return
        key = config.state_path(config.keys.device_key)
        try:
            paths = [state, *sorted(state.iterdir())]
        except OSError as exc:
            found.problem("state_dir", f"{state}: cannot list it: {exc.strerror or exc}")
            return
        me = os.geteuid()
        for path in paths:
            owner = path.lstat().st_uid
            if me != 0 and owner != me:
                # Typically left by a run as root: the agent can neither write it nor
                # make it private.
                found.problem(
                    "state_dir",
                    f"{path} belongs to uid {owner}, not to this user (uid {me}): "
                    f"chown -R the state directory to the agent's user",
                )
                continue
            loose = _loose_mode(path)
            if loose is not None and path != key:  # a loose key is refused below
                found.warnings.append(
                    f"state_dir: {path} is {loose:04o}, open to other users; "
                    f"the agent makes it {0o700 if path.is_dir() else 0o600:04o} when it starts"
                )
        return
    parent = next((p for p in state.parents if p.exists()), None)
    if parent is None or not os.access(parent, os.W_OK | os.X_OK):
        found.problem("state_dir", f"{state} does not exist and {parent} is not writable")


def _loose_mode(path: Path) -> int | None:
    mode = stat.S_IMODE(path.lstat().st_mode)
    return mode if mode & 0o077 and not path.is_symlink() else None


def _device_key(config: AgentConfig, found: Findings) -> None:
    path = config.state_path(config.keys.device_key)
    if not path.exists():
        if not config.hardware.simulated:
            found.problem(
                "keys.device_key",
                f"{path}: no device key; run `cabinet-agent keygen --out {path}` "
                "and register the printed public key at the centre",
            )
        return
    try:
        key = read_key(path)
    except KeyFileError as exc:
        found.problem("keys.device_key", str(exc))
        return
    _outbox_identity(config, key.public.to_text(), found)


def _outbox_identity(config: AgentConfig, pubkey: str, found: Findings) -> None:
    # Outbox refuses to reopen a record made by another device or key (exit 78); look
    # first, read-only. An outbox that cannot be read is left to `run` (exit 1: evidence).
    path = config.state_dir / OUTBOX_FILE
    if not path.exists():
        return
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
            meta = dict(db.execute("SELECT k, v FROM meta WHERE k IN ('device', 'pubkey')"))
        db.close()
    except sqlite3.Error:
        return
    if meta.get("device") not in (None, config.device):
        found.problem(
            "device",
            f"{path} belongs to device {meta['device']!r}, not {config.device!r}: "
            "refusing to mix two devices' records",
        )
    elif meta.get("pubkey") not in (None, pubkey):
        found.problem(
            "keys.device_key", f"{path} was signed with another key: the chain would not verify"
        )


def _central_key(config: AgentConfig, found: Findings) -> None:
    text = config.keys.central_pubkey
    if text is None:
        if not config.hardware.simulated:
            found.problem(
                "keys.central_pubkey",
                "not set: paste the centre's public key (`cabinetctl keygen` printed it); "
                "without it no policy or command is accepted",
            )
        return
    try:
        VerifyKey.from_text(text)
    except WireError as exc:
        found.problem("keys.central_pubkey", str(exc))


def _broker(config: AgentConfig, found: Findings) -> None:
    broker = config.broker
    if broker.host.endswith(PLACEHOLDER_TLD):
        found.problem("broker.url", f"{broker.host} is a placeholder: set the centre's broker")
    files = {
        "ca_file": broker.ca_file,
        "cert_file": broker.cert_file,
        "key_file": broker.key_file,
        "password_file": broker.password_file,
    }
    for name, value in files.items():
        if value is None:
            continue
        path = config.state_path(value)
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            found.problem(f"broker.{name}", f"{path}: {exc.strerror or exc}")
            files[name] = None
    if not broker.tls:
        ignored = [n for n in ("ca_file", "cert_file", "key_file") if getattr(broker, n)]
        if ignored:
            found.warnings.append(
                f"broker: {', '.join(ignored)} ignored: broker.url is plain mqtt://, not mqtts://"
            )
        return
    if broker.key_file is not None and broker.cert_file is None:
        found.problem("broker.key_file", "set without cert_file")
    _tls_loads(config, files, found)


def _tls_loads(config: AgentConfig, files: dict[str, Path | None], found: Findings) -> None:
    # The same loads paho's tls_set makes when the uplink first connects, where a bad
    # file would only show as a connection that never comes up.
    context = ssl.create_default_context()
    ca, cert, key = files["ca_file"], files["cert_file"], files["key_file"]
    if ca is not None:
        try:
            context.load_verify_locations(cafile=str(config.state_path(ca)))
        except (ssl.SSLError, OSError) as exc:
            found.problem(
                "broker.ca_file", f"{config.state_path(ca)}: not a CA certificate ({exc})"
            )
    if cert is not None and (key is not None or config.broker.key_file is None):
        keyfile = str(config.state_path(key)) if key is not None else None
        try:
            # A passphrase-protected key fails here instead of prompting on a terminal.
            context.load_cert_chain(str(config.state_path(cert)), keyfile, password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            found.problem(
                "broker.cert_file",
                f"{config.state_path(cert)}: certificate and key do not load ({exc})",
            )


def _no_password() -> str:
    return ""


def _hardware(config: AgentConfig, found: Findings) -> None:
    hardware = config.hardware
    gpio = hardware.gpio
    if gpio is not None:
        found.warnings.extend(gpio.open_loop_warnings())
        module = PIN_FACTORY_MODULES.get(gpio.pin_factory)
        if module is not None and importlib.util.find_spec(module[0].split(".")[0]) is None:
            found.problem(
                "hardware.gpio.pin_factory",
                f"{gpio.pin_factory}: the {module[0]} module is not installed "
                f"(Debian package {module[1]}; the venv needs --system-site-packages)",
            )
    if hardware.readers is not None and importlib.util.find_spec("smartcard") is None:
        found.problem(
            "hardware.readers",
            "needs pyscard: pip install 'cabinet-agent[pcsc]' (swig, gcc, libpcsclite-dev)",
        )
    for name, part in (("modbus", hardware.modbus), ("bridge", hardware.bridge)):
        if part is not None and not Path(part.port).exists():
            found.warnings.append(
                f"hardware.{name}.port: {part.port} does not exist (yet): "
                "the agent raises its sensor or link alarms until it appears"
            )
    if "lock" not in hardware.output_owners():
        found.warnings.append("hardware: no driver owns the lock: nothing can release it")


def prepare_state_dir(config: AgentConfig) -> list[str]:
    """Make the state directory private (0700, files 0600) before anything writes to it.

    The umask covers every file created later (the outbox, its WAL, nonces, status);
    modes found looser are tightened and reported. Returns what was tightened.
    """
    os.umask(0o077)
    state = config.state_dir
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = config.state_path(config.keys.device_key)
    tightened = []
    for path in (state, *sorted(state.iterdir())):
        loose = _loose_mode(path)
        if loose is not None and path != key:  # never reached: check_before_start refuses it
            path.chmod(0o700 if path.is_dir() else 0o600)
            tightened.append(f"{path} {loose:04o} -> {0o700 if path.is_dir() else 0o600:04o}")
    return tightened
