"""Builds the drivers agent.toml's `[hardware]` asks for, one per configured part.

The backend of each part is chosen in config (GPIO pin factory, PC/SC readers, the
Modbus bus, the cabinet MCU link). Imports are lazy: pyscard is an optional extra (it
compiles), so a box without card readers must not need it. The simulated cabinet is
built by the agent itself (it needs the policy and the clock), not here.

Each output (lock, fan, buzzer, LEDs) must have exactly one driver: two drivers
switching one relay would fight, so an overlap is a configuration error.
"""

from __future__ import annotations

import structlog

from config.hardware import HardwareConfig
from config.loading import ConfigError, Problem
from drivers.base import Driver
from rules.effects import OutputName

log = structlog.get_logger("drivers.registry")

CONFIG_SOURCE = "agent.toml [hardware]"


def build_drivers(hw: HardwareConfig) -> list[Driver]:
    """Construct (not start) the configured drivers; on a failure, close those built."""
    built: list[Driver] = []
    try:
        if hw.gpio is not None:
            from drivers.gpio import GpioDriver

            built.append(GpioDriver(hw.gpio))
        if hw.readers is not None:
            built.append(_card_readers(hw))
        if hw.modbus is not None:
            from drivers.modbus import ModbusSensors

            built.append(ModbusSensors(hw.modbus))
        if hw.bridge is not None:
            from drivers.bridge import BridgeDriver

            built.append(BridgeDriver(hw.bridge))
        check_outputs(built)
    except BaseException:
        for driver in reversed(built):
            driver.close()
        raise
    log.info("drivers.built", drivers=[driver.name for driver in built])
    return built


def _card_readers(hw: HardwareConfig) -> Driver:
    assert hw.readers is not None
    try:
        from drivers.pcsc import PcscReaders
    except ModuleNotFoundError as exc:
        if exc.name != "smartcard":
            raise
        hint = "needs pyscard: pip install 'cabinet-agent[pcsc]' (swig, gcc, libpcsclite-dev)"
        raise ConfigError(CONFIG_SOURCE, [Problem("hardware.readers", hint)]) from None
    return PcscReaders(hw.readers)


def check_outputs(drivers: list[Driver]) -> None:
    owner: dict[OutputName, str] = {}
    problems = []
    for driver in drivers:
        for output in sorted(driver.outputs()):
            if output in owner:
                message = f"output {output!r} is wired to both {owner[output]} and {driver.name}"
                problems.append(Problem("hardware", message))
            else:
                owner[output] = driver.name
    if problems:
        raise ConfigError(CONFIG_SOURCE, problems)
