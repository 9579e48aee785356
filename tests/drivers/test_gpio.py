"""GPIO contacts and outputs on gpiozero's MockFactory (the library's own test pins)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from pydantic import ValidationError

from config.hardware import GpioConfig, GpioInput, GpioOutput
from drivers.gpio import GpioDriver
from rules.inputs import DoorChanged, LeakChanged, LockFeedback, TamperChanged
from tests.drivers.recorder import Inbox

DOOR, LOCK_FB, TAMPER, LEAK = 5, 19, 13, 6
RELAY, FAN, BUZZER, GREEN, RED = 17, 27, 22, 23, 24

CABINET = GpioConfig(
    pin_factory="mock",
    debounce_ms=50,
    # NC loops: closed (line pulled to ground) while all is well.
    door=GpioInput(pin=DOOR, normally_closed=True),
    lock_feedback=GpioInput(pin=LOCK_FB, normally_closed=True),
    tamper=GpioInput(pin=TAMPER, normally_closed=True),
    # NO float switch: closes to ground when wet.
    leak=GpioInput(pin=LEAK),
    lock_relay=GpioOutput(pin=RELAY),
    fan=GpioOutput(pin=FAN),
    buzzer=GpioOutput(pin=BUZZER),
    led_green=GpioOutput(pin=GREEN),
    led_red=GpioOutput(pin=RED, active_high=False),  # LED sinks into the GPIO
)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    factory = MockFactory()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = None


@pytest.fixture
def cabinet(factory: MockFactory) -> Iterator[tuple[GpioDriver, Inbox]]:
    driver = GpioDriver(CABINET)
    # A healthy cabinet: door, bolt and tamper loops closed, leak contact open.
    for pin in (DOOR, LOCK_FB, TAMPER):
        factory.pin(pin).drive_low()
    factory.pin(LEAK).drive_high()
    inbox = Inbox()
    driver.start(inbox.post)
    yield driver, inbox
    driver.close()


def test_every_contact_state_is_posted_at_start(cabinet: tuple[GpioDriver, Inbox]) -> None:
    _, inbox = cabinet
    inbox.wait_for(lambda xs: len(xs) >= 4)
    assert inbox.snapshot() == [
        DoorChanged(open=False),
        LockFeedback(engaged=True),
        TamperChanged(open=False),
        LeakChanged(wet=False),
    ]


def test_door_tamper_and_leak_changes_are_posted(
    factory: MockFactory, cabinet: tuple[GpioDriver, Inbox]
) -> None:
    _, inbox = cabinet
    factory.pin(DOOR).drive_high()
    inbox.wait_for_item(DoorChanged(open=True), after=4)
    factory.pin(TAMPER).drive_high()
    inbox.wait_for_item(TamperChanged(open=True), after=4)
    factory.pin(LEAK).drive_low()
    inbox.wait_for_item(LeakChanged(wet=True), after=4)
    factory.pin(LOCK_FB).drive_high()
    inbox.wait_for_item(LockFeedback(engaged=False), after=4)
    factory.pin(DOOR).drive_low()
    inbox.wait_for_item(DoorChanged(open=False), after=5)


def test_a_bounce_shorter_than_the_debounce_time_posts_nothing(
    factory: MockFactory, cabinet: tuple[GpioDriver, Inbox]
) -> None:
    _, inbox = cabinet
    door = factory.pin(DOOR)
    for _ in range(5):  # the reed switch chatters as the door is nudged
        door.drive_high()
        door.drive_low()
    # Then the door really opens; had the chatter leaked, an open/closed pair or a
    # second open would precede this one.
    door.drive_high()
    inbox.wait_for_item(DoorChanged(open=True), after=4)
    assert [x for x in inbox.snapshot() if isinstance(x, DoorChanged)] == [
        DoorChanged(open=False),
        DoorChanged(open=True),
    ]


def test_a_cut_normally_closed_door_loop_is_a_door_open_event(factory: MockFactory) -> None:
    # The loop is cut before the agent even starts: the pull-up wins, the line reads
    # high, and that is reported as an open door rather than a quiet unknown.
    config = GpioConfig(pin_factory="mock", door=GpioInput(pin=DOOR, normally_closed=True))
    driver = GpioDriver(config)
    inbox = Inbox()
    try:
        driver.start(inbox.post)
        inbox.wait_for_item(DoorChanged(open=True))
        factory.pin(DOOR).drive_low()  # the installer repairs the loop
        inbox.wait_for_item(DoorChanged(open=False))
    finally:
        driver.close()


def test_active_high_contact_without_pull_resistor(factory: MockFactory) -> None:
    config = GpioConfig(
        pin_factory="mock",
        debounce_ms=0,
        leak=GpioInput(pin=LEAK, active_high=True, pull_up=None),
    )
    driver = GpioDriver(config)
    inbox = Inbox()
    try:
        factory.pin(LEAK).drive_low()
        driver.start(inbox.post)
        inbox.wait_for_item(LeakChanged(wet=False))
        factory.pin(LEAK).drive_high()
        inbox.wait_for_item(LeakChanged(wet=True))
    finally:
        driver.close()


def test_the_lock_relay_is_energised_only_while_unlock_is_applied(
    factory: MockFactory, cabinet: tuple[GpioDriver, Inbox]
) -> None:
    driver, _ = cabinet
    relay = factory.pin(RELAY)
    assert [s.state for s in relay.states] == [False]
    driver.apply("fan", True)
    driver.apply("buzzer", True)
    driver.apply("led_green", True)
    assert [s.state for s in relay.states] == [False]
    driver.apply("lock", True)
    assert relay.state
    driver.apply("lock", False)
    relay.assert_states([False, True, False])


def test_close_leaves_every_output_off(
    factory: MockFactory, cabinet: tuple[GpioDriver, Inbox]
) -> None:
    driver, _ = cabinet
    assert driver.outputs() == {"lock", "fan", "buzzer", "led_green", "led_red"}
    for output in driver.outputs():
        driver.apply(output, True)
    assert factory.pin(RED).state == 0  # active-low LED lit
    driver.close()
    for pin in (RELAY, FAN, BUZZER, GREEN):
        assert factory.pin(pin).state == 0
        assert factory.pin(pin).states[-1].state == 0
    assert factory.pin(RED).states[-1].state == 1  # active-low LED dark
    driver.close()  # idempotent


def test_an_unconfigured_output_is_a_programming_error(factory: MockFactory) -> None:
    driver = GpioDriver(GpioConfig(pin_factory="mock", fan=GpioOutput(pin=FAN)))
    try:
        assert driver.outputs() == {"fan"}
        with pytest.raises(ValueError, match="lock"):
            driver.apply("lock", True)
    finally:
        driver.close()


def test_one_gpio_line_cannot_serve_two_purposes() -> None:
    with pytest.raises(ValidationError, match="already used by door"):
        GpioConfig(door=GpioInput(pin=5), lock_relay=GpioOutput(pin=5))
