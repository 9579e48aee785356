"""drivers.registry: agent.toml's [hardware] sections in, one driver per part out."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from config.hardware import HardwareConfig
from config.loading import ConfigError
from drivers.base import Driver
from drivers.registry import build_drivers, check_outputs
from tests.realparts import require_module

AGENT_TOML = """
[hardware.gpio]
pin_factory = "mock"
debounce_ms = 25
door = { pin = 5, normally_closed = true }
leak = { pin = 6, debounce_ms = 200 }
lock_relay = { pin = 17 }
led_green = { pin = 23 }
led_red = { pin = 24, active_high = false }

[hardware.modbus]
port = "/dev/ttyRS485"
period_ms = 500
median_of = 5

[[hardware.modbus.scales]]
slot = 3
unit = 1
address = 0
scale_num = 10

[hardware.modbus.voc]
unit = 2
address = 0
table = "input"
words = 1

[hardware.bridge]
port = "/dev/ttyMCU"
outputs = ["fan", "buzzer"]
"""


@pytest.fixture(autouse=True)
def mock_pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = None


def hardware(text: str) -> HardwareConfig:
    return HardwareConfig.model_validate(tomllib.loads(text)["hardware"])


def close_all(drivers: list[Driver]) -> None:
    for driver in drivers:
        driver.close()


def test_each_configured_part_gets_its_driver() -> None:
    drivers = build_drivers(hardware(AGENT_TOML))
    try:
        assert [d.name for d in drivers] == ["gpio", "modbus", "bridge"]
        assert all(isinstance(d, Driver) for d in drivers)
        owners = {output: d.name for d in drivers for output in d.outputs()}
        assert owners == {
            "lock": "gpio",
            "led_green": "gpio",
            "led_red": "gpio",
            "fan": "bridge",
            "buzzer": "bridge",
        }
    finally:
        close_all(drivers)


def test_card_readers_are_built_from_their_section() -> None:
    require_module("smartcard", "pip install pyscard")
    drivers = build_drivers(hardware('[hardware.readers]\na_pattern = "ACR122U.* 00 00$"'))
    try:
        assert [d.name for d in drivers] == ["readers"]
        assert drivers[0].outputs() == frozenset()
    finally:
        close_all(drivers)


def test_no_hardware_section_means_no_drivers() -> None:
    assert build_drivers(HardwareConfig()) == []


def test_one_output_on_two_drivers_is_refused_when_the_config_is_read() -> None:
    clash = AGENT_TOML.replace('outputs = ["fan", "buzzer"]', 'outputs = ["lock", "fan"]')
    with pytest.raises(ValueError, match="'lock' is wired to both gpio and bridge"):
        hardware(clash)


def test_the_registry_refuses_one_output_on_two_drivers_and_leaves_nothing_open() -> None:
    drivers = build_drivers(hardware(AGENT_TOML))
    try:
        with pytest.raises(ConfigError, match="'lock' is wired to both gpio and gpio"):
            check_outputs([*drivers, drivers[0]])
    finally:
        close_all(drivers)
    # The pins were released: the same configuration builds again.
    close_all(build_drivers(hardware(AGENT_TOML)))


def test_an_external_pull_resistor_is_written_as_external_in_toml() -> None:
    from config.hardware import GpioInput

    assert GpioInput.model_validate({"pin": 4, "pull_up": "external"}).pull_up is None
    with pytest.raises(ValueError, match='"external"'):
        GpioInput.model_validate({"pin": 4, "pull_up": "none"})
