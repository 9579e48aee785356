"""drivers.bridge: the MCU's reports become typed inputs, the core's outputs become commands."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.hardware import BridgeConfig
from drivers.base import Driver
from drivers.bridge import BridgeDriver
from firmware_bridge.codes import OutputId
from firmware_bridge.messages import LockCommand
from rules.inputs import (
    DoorChanged,
    LeakChanged,
    LockFeedback,
    SensorFault,
    SensorRecovered,
    TamperChanged,
    WeightReading,
)
from tests.firmware_bridge.conftest import (
    ACK_TIMEOUT_MS,
    FAILSAFE_MS,
    HEARTBEAT_MS,
    RETRIES,
    PtyMcu,
    Recorder,
    wait_until,
)


@pytest.fixture
def inbox() -> Recorder:
    return Recorder()


@pytest.fixture
def driver(mcu: PtyMcu, inbox: Recorder) -> Iterator[BridgeDriver]:
    config = BridgeConfig(
        port=mcu.path,
        heartbeat_ms=HEARTBEAT_MS,
        failsafe_ms=FAILSAFE_MS,
        ack_timeout_ms=ACK_TIMEOUT_MS,
        retries=RETRIES,
        unlock_max_ms=5000,
    )
    driver = BridgeDriver(config)
    driver.start(inbox)
    inbox.wait_item(LockFeedback(engaged=True))  # the session's snapshot has arrived
    try:
        yield driver
    finally:
        driver.close()


def test_bridge_driver_is_a_driver_with_the_mcu_outputs(driver: BridgeDriver) -> None:
    assert isinstance(driver, Driver)
    assert driver.outputs() == {"lock", "fan", "buzzer"}
    with pytest.raises(ValueError):
        driver.apply("led_green", True)


def test_door_weights_tamper_and_leak_are_posted_as_inputs(
    mcu: PtyMcu, driver: BridgeDriver, inbox: Recorder
) -> None:
    inbox.wait_item(DoorChanged(open=False))
    inbox.wait_item(WeightReading(slot=1, mg=682_000))
    mcu.sim.set_door(True)
    mcu.sim.set_weight(1, 431_000)
    mcu.sim.set_tamper(True)
    mcu.sim.set_leak(True)
    inbox.wait_item(DoorChanged(open=True))
    inbox.wait_item(WeightReading(slot=1, mg=431_000))
    inbox.wait_item(TamperChanged(open=True))
    inbox.wait_item(LeakChanged(wet=True))
    counts = driver.counters()  # reported in status.json
    assert counts["frames_in"] > 0 and counts["frame_errors"] == 0


def test_a_resync_snapshot_does_not_repeat_a_door_change(
    mcu: PtyMcu, driver: BridgeDriver, inbox: Recorder
) -> None:
    mcu.sim.set_door(True)
    inbox.wait_item(DoorChanged(open=True))
    mark = len(inbox.snapshot())
    mcu.sim.reboot()  # INFO + snapshot (door still open), then HELLO + snapshot again
    inbox.wait_for(
        lambda xs: sum(isinstance(x, WeightReading) for x in xs[mark:]) >= 6, "a few readings"
    )
    assert DoorChanged(open=True) not in inbox.snapshot()[mark:]


def test_lock_output_unlocks_with_a_hold_time_and_locks_again(
    mcu: PtyMcu, driver: BridgeDriver, inbox: Recorder
) -> None:
    driver.apply("lock", True)
    wait_until(lambda: mcu.sim.relay_on, "relay energised")
    inbox.wait_item(LockFeedback(engaged=False))
    assert LockCommand(True, 5000) in mcu.sim.applied
    driver.apply("lock", False)
    wait_until(lambda: not mcu.sim.relay_on, "relay off")
    inbox.wait_item(LockFeedback(engaged=True), after=1)


def test_fan_and_buzzer_follow_the_core(mcu: PtyMcu, driver: BridgeDriver) -> None:
    driver.apply("fan", True)
    driver.apply("buzzer", True)
    wait_until(lambda: mcu.sim.outputs[OutputId.FAN] and mcu.sim.outputs[OutputId.BUZZER], "on")
    driver.apply("buzzer", False)
    wait_until(lambda: not mcu.sim.outputs[OutputId.BUZZER], "buzzer off")


def test_a_silent_mcu_is_an_mcu_sensor_fault_that_recovers_after_reboot(
    mcu: PtyMcu, driver: BridgeDriver, inbox: Recorder
) -> None:
    mcu.sim.hang()
    inbox.wait_item(SensorFault(sensor="mcu", detail="link silent"))
    mcu.sim.reboot()
    inbox.wait_item(SensorRecovered(sensor="mcu"))


def test_after_an_mcu_reboot_the_fan_is_restored_but_an_unlock_is_not_repeated(
    mcu: PtyMcu, driver: BridgeDriver, inbox: Recorder
) -> None:
    driver.apply("fan", True)
    driver.apply("lock", True)
    wait_until(lambda: mcu.sim.relay_on and mcu.sim.outputs[OutputId.FAN], "unlocked, fan on")
    mcu.sim.reboot()
    mark = inbox.wait_item(LockFeedback(engaged=True))  # rebooted: relay off, locked
    wait_until(lambda: mcu.sim.outputs[OutputId.FAN], "fan switched on again")
    inbox.wait_for(
        lambda xs: sum(isinstance(x, WeightReading) for x in xs[mark:]) >= 6, "time to pass"
    )
    assert not mcu.sim.relay_on


def test_a_scale_fault_is_a_fault_of_that_slot(
    mcu: PtyMcu, driver: BridgeDriver, inbox: Recorder
) -> None:
    mcu.sim.set_scale_fault(2, True)
    inbox.wait_item(SensorFault(sensor="scale:2", detail="mcu reports scale fault"))
    mcu.sim.set_scale_fault(2, False)
    inbox.wait_item(SensorRecovered(sensor="scale:2"))


def test_closing_the_driver_locks_and_switches_everything_off(
    mcu: PtyMcu, driver: BridgeDriver
) -> None:
    driver.apply("lock", True)
    driver.apply("fan", True)
    wait_until(lambda: mcu.sim.relay_on and mcu.sim.outputs[OutputId.FAN], "unlocked, fan on")
    driver.close()
    assert not mcu.sim.relay_on and not any(mcu.sim.outputs.values())
    assert not mcu.sim.failsafe_tripped  # locked by command, before the failsafe was needed


def test_an_absent_mcu_is_an_mcu_sensor_fault(inbox: Recorder) -> None:
    config = BridgeConfig(port="/dev/nonexistent-mcu", heartbeat_ms=100, failsafe_ms=300)
    driver = BridgeDriver(config)
    driver.start(inbox)
    try:
        inbox.wait_item(SensorFault(sensor="mcu", detail="link port"))
    finally:
        driver.close()
