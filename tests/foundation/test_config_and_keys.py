"""agent.toml mistakes are named (file, line, key, problem) with exit 78; keys are 0600."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from config.agent import load_agent_config

ROOT = Path(__file__).resolve().parents[2]
GOOD = 'device = "cab-1"\nsite = "lab"\n[broker]\nurl = "mqtt://127.0.0.1:1883"\n'


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "text, named, problem",
    [
        ('site = "lab"\n', "device", "required key is missing"),
        (
            'device = "cab-1"\nsite = "lab"\n[broker]\nkeepalive_s = "thirty"\n',
            "broker.keepalive_s",
            "valid integer",
        ),
        (GOOD + "colour = 'red'\n", "broker.colour", "unknown key"),
        (
            'device = "cab-1"\nsite = "lab"\n[outbox]\nmax_byte = 1\n',
            "outbox.max_byte",
            "unknown key",
        ),
        ('device = "cab 1"\nsite = "lab"\n', "device", "pattern"),
        ('device = "cab-1"\nsite = "lab\n', "", "not valid TOML"),
    ],
)
def test_a_bad_config_names_the_key_and_the_problem_and_exits_78(tmp_path, text, named, problem):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    proc = agent("check-config", str(path))
    assert proc.returncode == 78
    assert str(path) in proc.stderr and named in proc.stderr and problem in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_line_of_the_bad_key_is_given(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(GOOD + "[health]\nheartbeat_s = -1\n")
    assert f"{path}:6: health.heartbeat_s" in agent("check-config", str(path)).stderr


def test_a_missing_config_file_is_named_and_exits_78(tmp_path):
    proc = agent("check-config", str(tmp_path / "nope.toml"))
    assert proc.returncode == 78 and "nope.toml: file not found" in proc.stderr


def test_the_example_cabinet_passes_check_config_once_its_files_are_provisioned(tmp_path):
    from agent.wire.key_files import write_new_key
    from tests.support.broker import CertAuthority

    authority = CertAuthority(tmp_path / "tls")
    client = authority.client("cab-chem-0042")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    write_new_key(state / "device.key")
    text = (ROOT / "config" / "examples" / "agent.toml").read_text()
    for placeholder, real in {
        "/etc/cabinet-agent/tls/ca.crt": authority.ca,
        "/etc/cabinet-agent/tls/client.crt": client.cert,
        "/etc/cabinet-agent/tls/client.key": client.key,
        "/var/lib/cabinet-agent": state,
        'pin_factory = "lgpio"': 'pin_factory = "mock"',  # this host is not a Pi
    }.items():
        assert placeholder in text
        text = text.replace(placeholder, str(real))
    path = tmp_path / "agent.toml"
    path.write_text(text)
    proc = agent("check-config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "normally-open" not in proc.stderr  # every alarm loop is normally closed


def test_the_simulated_example_passes_check_config(tmp_path):
    example = ROOT / "config" / "examples" / "sim.toml"
    proc = agent("check-config", str(example), env={"CABINET_STATE_DIR": str(tmp_path / "s")})
    assert proc.returncode == 0, proc.stderr


def test_environment_overrides_broker_and_state_dir(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(GOOD)
    config = load_agent_config(
        path,
        {
            "CABINET_BROKER_URL": "mqtts://b.example:8884",
            "CABINET_STATE_DIR": str(tmp_path / "state"),
        },
    )
    assert (config.broker.host, config.broker.port, config.broker.tls) == ("b.example", 8884, True)
    assert config.state_dir == tmp_path / "state"


def test_a_bad_broker_url_from_the_environment_is_a_config_error(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(GOOD)
    proc = agent("check-config", str(path), env={"CABINET_BROKER_URL": "tcp://x"})
    assert proc.returncode == 78 and "broker.url" in proc.stderr


def test_keygen_writes_a_private_key_only_its_owner_can_read_and_prints_the_public_key(tmp_path):
    out = tmp_path / "device.key"
    proc = agent("keygen", "--out", str(out))
    assert proc.returncode == 0
    line = proc.stdout.strip()
    assert line.startswith("pubkey ") and len(line.split()[1]) == 43
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    from agent.wire.key_files import read_key

    assert read_key(out).public.to_text() == line.split()[1]


def test_keygen_refuses_to_overwrite_an_existing_key(tmp_path):
    out = tmp_path / "device.key"
    agent("keygen", "--out", str(out))
    before = out.read_bytes()
    proc = agent("keygen", "--out", str(out))
    assert proc.returncode == 1 and "refusing to overwrite" in proc.stderr
    assert out.read_bytes() == before


def test_a_key_readable_by_others_is_refused(tmp_path):
    out = tmp_path / "device.key"
    agent("keygen", "--out", str(out))
    out.chmod(0o644)
    from agent.wire.key_files import KeyFileError, read_key

    with pytest.raises(KeyFileError, match="readable by others"):
        read_key(out)


def test_replay_names_the_line_of_a_malformed_scenario_and_exits_2(tmp_path):
    scenario = tmp_path / "s.jsonl"
    scenario.write_text(
        '{"t": 0, "input": "tick"}\n{"t": 1, "input": "badge", "reader": "C", "uid": "04AA"}\n'
    )
    proc = agent("replay", str(scenario), "--policy", str(ROOT / "examples" / "policy.toml"))
    assert proc.returncode == 2
    assert "line 2" in proc.stderr and "reader" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "line, why",
    [
        ("not json", "not JSON"),
        ('{"t": 5, "input": "tick"}\n{"t": 1, "input": "tick"}', "back in time"),
        ('{"t": 0, "input": "dance"}', "input"),
        ('{"t": 0, "input": "door", "state": "ajar"}', "state"),
        ('{"t": 0, "input": "weight", "slot": 3, "mg": 1.5}', "mg"),
        ('{"t": -1, "input": "tick"}', "t"),
        ('{"t": 0, "input": "tick", "extra": 1}', "extra"),
        ("[" * 100_000, "nested too deep"),  # json.loads recurses per level: no traceback
    ],
)
def test_every_kind_of_malformed_scenario_line_is_refused_with_its_line(tmp_path, line, why):
    scenario = tmp_path / "s.jsonl"
    scenario.write_text(line + "\n")
    proc = agent("replay", str(scenario), "--policy", str(ROOT / "examples" / "policy.toml"))
    assert proc.returncode == 2 and "line " in proc.stderr and why in proc.stderr, proc.stderr


def test_a_damaged_outbox_stops_the_agent_with_a_clear_message(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.db").write_bytes(b"this is not a database" * 100)
    config = tmp_path / "agent.toml"
    config.write_text(
        GOOD
        + f'state_dir = "{state}"\n[hardware.sim]\nenabled = true\n'.replace(
            "state_dir", "# moved"
        ).replace("# moved", "state_dir", 0)
    )
    text = (
        f'device = "cab-1"\nsite = "lab"\nstate_dir = "{state}"\n[hardware.sim]\nenabled = true\n'
    )
    config.write_text(text)
    proc = agent("run", "--config", str(config))
    assert proc.returncode == 1
    assert "outbox" in proc.stderr and "cannot be opened" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (state / "outbox.db").read_bytes().startswith(b"this is not"), "evidence kept"


@pytest.mark.parametrize("active_high", [True, False])
def test_the_lock_relay_is_only_accepted_on_a_pin_held_low_from_power_on(active_high):
    from pydantic import ValidationError

    from config.hardware import GpioConfig, GpioOutput

    accepted = set()
    for pin in range(28):  # the 40-pin header's GPIO 0-27
        try:
            GpioConfig(lock_relay=GpioOutput(pin=pin, active_high=active_high))
        except ValidationError as exc:
            assert "before the agent runs" in str(exc) or "could open" in str(exc)
        else:
            accepted.add(pin)
    # 0-8 are pulled up at power-on, 14/15 may be the UART; an active-low relay pulls in
    # whenever the Pi does not drive its line (off, booting), so no pin makes it safe.
    expected = set(range(9, 28)) - {14, 15} if active_high else set()
    assert accepted == expected
