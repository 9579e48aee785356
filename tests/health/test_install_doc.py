"""docs/install-pi.md stays true: its agent.toml loads, and its pins agree with each other."""

from __future__ import annotations

import re
from pathlib import Path

from config.agent import load_agent_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "install-pi.md"
INPUTS = ("door", "lock_feedback", "tamper", "leak")
OUTPUTS = ("lock_relay", "fan", "buzzer", "led_green", "led_red")


def doc_agent_toml() -> str:
    blocks: list[str] = re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith("device = ")]
    return block


def test_the_documented_agent_toml_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(doc_agent_toml())
    config = load_agent_config(path, environ={})
    gpio = config.hardware.gpio
    assert gpio is not None and config.hardware.readers and config.hardware.modbus
    for name in INPUTS:
        line = getattr(gpio, name)
        # Fail-safe wiring: every contact is a normally-closed loop to GND with pull-up.
        assert (line.normally_closed, line.pull_up, line.active_high) == (True, True, False)
    assert gpio.lock_relay is not None and gpio.lock_relay.active_high  # energised = open


def test_the_wiring_table_and_config_txt_match_the_agent_toml(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(doc_agent_toml())
    gpio = load_agent_config(path, environ={}).hardware.gpio
    assert gpio is not None
    text = DOC.read_text()
    table = {
        match.group(2): int(match.group(1))
        for match in re.finditer(r"^\| [^|]+ \| (\d+) \| \d+ \| [^|]+ \| `(\w+) = ", text, re.M)
    }
    assert table == {name: getattr(gpio, name).pin for name in INPUTS + OUTPUTS}
    # The firmware drives exactly the output lines low at power-on.
    (early,) = re.findall(r"gpio=([\d,]+)=op,dl", text)
    assert {int(p) for p in early.split(",")} == {getattr(gpio, n).pin for n in OUTPUTS}
    # BCM -> physical header pin, for the rows the installer wires by hand.
    header = {17: 11, 27: 13, 22: 15, 23: 16, 24: 18, 25: 22, 12: 32, 16: 36, 26: 37}
    for match in re.finditer(r"^\| [^|]+ \| (\d+) \| (\d+) \|", text, re.M):
        assert header[int(match.group(1))] == int(match.group(2))
