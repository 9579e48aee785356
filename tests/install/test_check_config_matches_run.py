"""`check-config` refuses exactly what `run` refuses, with the same words and exit 78.

Under `Restart=always` a configuration that check-config passes but `run` refuses is a
restart loop on site; both are run here as real subprocesses on the same files.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.wire import SigningKey
from agent.wire.key_files import write_new_key

ROOT = Path(__file__).resolve().parents[2]
EX_CONFIG = 78
CENTRAL = SigningKey.generate().public.to_text()

# A real cabinet on gpiozero's mock pins, wired fail-secure like config/examples/agent.toml.
WIRING = """
[hardware.gpio]
pin_factory = "mock"
door = { pin = 17, normally_closed = true }
tamper = { pin = 22, normally_closed = true }
leak = { pin = 23, normally_closed = true }
lock_relay = { pin = 24 }
"""


@dataclass
class Cabinet:
    home: Path
    keys: str = f'central_pubkey = "{CENTRAL}"\n'
    broker: str = 'url = "mqtt://127.0.0.1:9"\n'
    wiring: str = WIRING

    @property
    def state(self) -> Path:
        return self.home / "state"

    def write(self) -> Path:
        path = self.home / "agent.toml"
        path.write_text(
            f'device = "cab-1"\nsite = "lab"\nstate_dir = "{self.state}"\n'
            f"[broker]\n{self.broker}[keys]\n{self.keys}{self.wiring}",
            encoding="utf-8",
        )
        return path


def provisioned(tmp: Path) -> Cabinet:
    cabinet = Cabinet(tmp)
    cabinet.state.mkdir(mode=0o700)
    write_new_key(cabinet.state / "device.key")
    return cabinet


def agent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CABINET_")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )


def relay(line: str) -> Callable[[Cabinet], None]:
    def change(cabinet: Cabinet) -> None:
        cabinet.wiring = WIRING.replace("lock_relay = { pin = 24 }", line)

    return change


def outbox_of(device: str, pubkey: str) -> Callable[[Cabinet], None]:
    def change(cabinet: Cabinet) -> None:
        db = sqlite3.connect(cabinet.state / "outbox.db")
        db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v)")
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("device", device), ("pubkey", pubkey)])
        db.commit()
        db.close()

    return change


def set_attr(**values: str) -> Callable[[Cabinet], None]:
    def change(cabinet: Cabinet) -> None:
        for name, value in values.items():
            setattr(cabinet, name, value.replace("HOME", str(cabinet.home)))

    return change


def key_file(content: bytes, mode: int = 0o600) -> Callable[[Cabinet], None]:
    def change(cabinet: Cabinet) -> None:
        path = cabinet.state / "device.key"
        path.write_bytes(content)
        path.chmod(mode)

    return change


def loose_key(cabinet: Cabinet) -> None:
    (cabinet.state / "device.key").chmod(0o644)


def no_key(cabinet: Cabinet) -> None:
    (cabinet.state / "device.key").unlink()


def state_is_a_file(cabinet: Cabinet) -> None:
    shutil.rmtree(cabinet.state)
    cabinet.state.write_text("not a directory")


def tls_with(cert: bytes) -> Callable[[Cabinet], None]:
    def change(cabinet: Cabinet) -> None:
        (cabinet.home / "client.crt").write_bytes(cert)
        cabinet.broker = (
            f'url = "mqtts://127.0.0.1:9"\ncert_file = "{cabinet.home / "client.crt"}"\n'
        )

    return change


BROKEN: dict[str, tuple[Callable[[Cabinet], None], str]] = {
    "lock relay on a pin pulled up at power-on": (
        relay("lock_relay = { pin = 5 }"),
        "hardware.gpio.lock_relay: GPIO 5 is pulled up at power-on",
    ),
    "lock relay active-low": (
        relay("lock_relay = { pin = 24, active_high = false }"),
        "hardware.gpio.lock_relay: an active-low relay on GPIO 24 pulls in",
    ),
    "lock relay on the UART's transmit line": (
        relay("lock_relay = { pin = 14 }"),
        "hardware.gpio.lock_relay: GPIO 14 may be the UART at boot",
    ),
    "lock relay driven by two drivers": (
        set_attr(wiring=WIRING + "[hardware.sim]\nenabled = true\n"),
        "output 'lock' is wired to both gpio and sim",
    ),
    "the install doc's placeholder central key": (
        set_attr(keys='central_pubkey = "PASTE-THE-CENTRAL-PUBKEY-HERE"\n'),
        "keys.central_pubkey: ",
    ),
    "no central key on a real cabinet": (
        set_attr(keys=""),
        "keys.central_pubkey: not set",
    ),
    "no device key on a real cabinet": (no_key, "no device key; run `cabinet-agent keygen"),
    "a device key that is not a key": (key_file(b"hello\n"), "not a key file"),
    "a device key readable by others": (loose_key, "private key is readable by others"),
    "a placeholder broker": (
        set_attr(broker='url = "mqtts://broker.invalid:8883"\n'),
        "broker.url: broker.invalid is a placeholder",
    ),
    "a missing CA file": (
        set_attr(broker='url = "mqtts://127.0.0.1:9"\nca_file = "HOME/nope.crt"\n'),
        "broker.ca_file: ",
    ),
    "a client certificate that does not load": (
        tls_with(b"-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n"),
        "broker.cert_file: ",
    ),
    "a state directory that is a file": (state_is_a_file, "state is not a directory"),
    "an outbox of another device": (
        outbox_of("cab-other", "x"),
        "belongs to device 'cab-other', not 'cab-1'",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_check_config_and_run_refuse_a_broken_config_with_the_same_message(
    tmp_path: Path, case: str
) -> None:
    cabinet = provisioned(tmp_path)
    change, message = BROKEN[case]
    change(cabinet)
    path = cabinet.write()
    checked = agent("check-config", str(path))
    ran = agent("run", "--config", str(path))
    assert checked.returncode == EX_CONFIG, checked.stderr
    assert ran.returncode == EX_CONFIG, ran.stderr
    assert message in checked.stderr, checked.stderr
    assert checked.stderr == ran.stderr
    assert "Traceback" not in checked.stderr + ran.stderr


@pytest.mark.parametrize(
    ("wiring", "key"),
    [
        ("lock_relay = { pin = 5 }", "hardware.gpio.lock_relay"),
        ("lock_relay = { pin = 24, active_high = false }", "hardware.gpio.lock_relay"),
        ("lock_relay = { pin = 14 }", "hardware.gpio.lock_relay"),
        ("lock_relay = { pin = 17 }", "hardware.gpio.lock_relay.pin"),  # the door's pin
    ],
)
def test_a_refused_lock_relay_pin_is_named_by_file_and_line_like_any_config_error(
    tmp_path: Path, wiring: str, key: str
) -> None:
    cabinet = provisioned(tmp_path)
    relay(wiring)(cabinet)
    path = cabinet.write()
    (number,) = [
        n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(wiring)
    ]
    checked = agent("check-config", str(path))
    assert checked.returncode == EX_CONFIG
    assert f"\n{path}:{number}: {key}: " in checked.stderr, checked.stderr


def test_an_outbox_signed_with_another_key_is_refused_by_both(tmp_path: Path) -> None:
    cabinet = provisioned(tmp_path)
    outbox_of("cab-1", SigningKey.generate().public.to_text())(cabinet)
    path = cabinet.write()
    checked, ran = agent("check-config", str(path)), agent("run", "--config", str(path))
    assert (checked.returncode, ran.returncode) == (EX_CONFIG, EX_CONFIG)
    assert "was signed with another key" in checked.stderr and checked.stderr == ran.stderr


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    cabinet = provisioned(tmp_path)
    no_key(cabinet)
    cabinet.keys = ""
    cabinet.broker = 'url = "mqtts://broker.invalid:8883"\n'
    checked = agent("check-config", str(cabinet.write()))
    lines = checked.stderr.splitlines()
    assert lines[0] == "cabinet-agent: configuration error"
    assert [line.split(": ")[1] for line in lines[1:]] == [
        "keys.device_key",
        "keys.central_pubkey",
        "broker.url",
    ]


def test_a_config_check_config_passes_starts_and_makes_its_state_private(tmp_path: Path) -> None:
    cabinet = Cabinet(tmp_path)
    cabinet.wiring = WIRING.replace(
        "leak = { pin = 23, normally_closed = true }", "leak = { pin = 23 }"
    )
    cabinet.state.mkdir(mode=0o755)  # made by hand, too open
    write_new_key(cabinet.state / "device.key")
    (cabinet.state / "notes.txt").write_text("left by someone")
    (cabinet.state / "notes.txt").chmod(0o644)
    path = cabinet.write()
    checked = agent("check-config", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "is 0755, open to other users; the agent makes it 0700" in checked.stderr
    # A normally-open leak loop is a warning, from both commands: a cut wire reads "dry".
    assert "hardware.gpio.leak: normally-open loop" in checked.stderr
    assert "door: normally-open" not in checked.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(path)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("CABINET_")},
    )
    assert process.stderr is not None
    seen: list[str] = []
    try:
        for line in process.stderr:
            seen.append(line)
            if "daemon.ready" in line:
                break
        else:
            pytest.fail(f"run exited {process.wait()} without starting: {seen}")
    finally:
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=30)[1]
    assert process.returncode == 0, rest
    assert "hardware.gpio.leak: normally-open loop" in "".join(seen)
    assert stat.S_IMODE(cabinet.state.stat().st_mode) == 0o700
    for item in cabinet.state.iterdir():
        assert stat.S_IMODE(item.stat().st_mode) == 0o600, item


def test_a_passphrase_protected_tls_key_is_refused_by_both_without_a_prompt(
    tmp_path: Path,
) -> None:
    from tests.support.broker import CertAuthority

    client = CertAuthority(tmp_path / "tls").client("cab-1")
    locked = tmp_path / "locked.key"
    subprocess.run(
        ["openssl", "ec", "-in", client.key, "-aes256", "-passout", "pass:x", "-out", locked],
        check=True,
        capture_output=True,
    )
    cabinet = provisioned(tmp_path)
    cabinet.broker = (
        f'url = "mqtts://127.0.0.1:9"\ncert_file = "{client.cert}"\nkey_file = "{locked}"\n'
    )
    path = cabinet.write()
    checked = agent("check-config", str(path), timeout=30)  # a prompt would hang: no stdin
    ran = agent("run", "--config", str(path), timeout=30)
    assert (checked.returncode, ran.returncode) == (EX_CONFIG, EX_CONFIG)
    assert "broker.cert_file: " in checked.stderr and "do not load" in checked.stderr
    assert checked.stderr == ran.stderr


def test_state_left_by_a_run_as_root_is_refused_by_both_for_the_service_user() -> None:
    nobody = 65534
    home = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp is private to root
    try:
        home.chmod(0o755)
        cabinet = provisioned(home)
        os.chown(cabinet.state, nobody, nobody)
        os.chown(cabinet.state / "device.key", nobody, nobody)
        (cabinet.state / "outbox.db").write_bytes(b"")  # root's, 0644: made by `sudo run`
        path = cabinet.write()
        as_nobody = ("setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups")
        checked, ran = (
            subprocess.run(
                [*as_nobody, sys.executable, "-m", "agent.cli", *args],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=60,
            )
            for args in (("check-config", str(path)), ("run", "--config", str(path)))
        )
        assert (checked.returncode, ran.returncode) == (EX_CONFIG, EX_CONFIG), checked.stderr
        assert "outbox.db belongs to uid 0, not to this user (uid 65534)" in checked.stderr
        assert checked.stderr == ran.stderr
    finally:
        shutil.rmtree(home)
