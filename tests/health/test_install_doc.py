"""docs/install-pi.md stays true: its wiring table is the example config, pin for pin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from config.agent import load_agent_config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "install-pi.md"
EXAMPLE = ROOT / "config" / "examples" / "agent.toml"
SKELETON = ROOT / "config" / "examples" / "agent-skeleton.toml"
INPUTS = ("door", "lock_feedback", "tamper", "leak")
OUTPUTS = ("lock_relay", "fan", "buzzer", "led_green", "led_red")
# BCM -> physical header pin of the 40-pin header, for the rows wired by hand.
HEADER = {17: 11, 27: 13, 22: 15, 23: 16, 24: 18, 25: 22, 12: 32, 16: 36, 26: 37}


def example_gpio():  # type: ignore[no-untyped-def]
    gpio = load_agent_config(EXAMPLE, environ={}).hardware.gpio
    assert gpio is not None
    return gpio


def test_the_example_is_wired_fail_secure() -> None:
    gpio = example_gpio()
    for name in INPUTS:
        line = getattr(gpio, name)
        # Every contact is a normally-closed loop to GND on the pull-up.
        assert (line.normally_closed, line.pull_up, line.active_high) == (True, True, False)
    assert gpio.lock_relay is not None and gpio.lock_relay.active_high  # energised = open
    assert 9 <= gpio.lock_relay.pin <= 27 and gpio.lock_relay.pin not in (14, 15)


def test_the_wiring_table_is_the_example_config_pin_for_pin() -> None:
    gpio = example_gpio()
    text = DOC.read_text()
    table = {
        match.group(2): int(match.group(1))
        for match in re.finditer(r"^\| [^|]+ \| (\d+) \| \d+ \| [^|]+ \| `(\w+) = ", text, re.M)
    }
    assert table == {name: getattr(gpio, name).pin for name in INPUTS + OUTPUTS}
    for match in re.finditer(r"^\| [^|]+ \| (\d+) \| (\d+) \|", text, re.M):
        assert HEADER[int(match.group(1))] == int(match.group(2))
    # The firmware drives exactly the output lines low at power-on.
    (early,) = set(re.findall(r"gpio=([\d,]+)=op,dl", text))
    assert {int(p) for p in early.split(",")} == {getattr(gpio, n).pin for n in OUTPUTS}


def test_the_installed_skeleton_is_wired_like_the_example() -> None:
    skeleton = tomllib.loads(SKELETON.read_text())
    assert skeleton["hardware"] == tomllib.loads(EXAMPLE.read_text())["hardware"]


def test_the_doc_gives_the_one_command_and_the_installer_writes_the_config_txt_line() -> None:
    text = DOC.read_text()
    assert "sudo scripts/install-pi.sh --device" in text
    (early,) = set(re.findall(r"gpio=[\d,]+=op,dl", text))
    assert early in (ROOT / "scripts" / "install-pi.sh").read_text()
