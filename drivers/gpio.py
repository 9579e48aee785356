"""The cabinet's GPIO lines through gpiozero: four contacts in, five outputs out.

Inputs (door reed switch, lock feedback, tamper switch, leak detector) are posted as
their domain meaning once they have settled (drivers.debounce), and each one's state is
posted at start so the core never has to guess. Outputs (lock relay, fan, buzzer, two
status LEDs) start off: the relay is fail-secure, off = locked. The pin factory comes
from config (`lgpio` on a Pi 5, `mock` in tests), so the same code runs on both.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from gpiozero import Device, DigitalInputDevice, GPIOZeroError, OutputDevice

from config.hardware import GpioConfig, GpioInput
from drivers.base import Post
from drivers.debounce import Debouncer
from rules.effects import OutputName
from rules.inputs import AnyInput, DoorChanged, LeakChanged, LockFeedback, TamperChanged

log = structlog.get_logger("drivers.gpio")

ContactName = Literal["door", "lock_feedback", "tamper", "leak"]
CONTACTS: tuple[ContactName, ...] = ("door", "lock_feedback", "tamper", "leak")
OUTPUT_LINES: dict[OutputName, str] = {
    "lock": "lock_relay",
    "fan": "fan",
    "buzzer": "buzzer",
    "led_green": "led_green",
    "led_red": "led_red",
}


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def contact_input(name: ContactName, abnormal: bool) -> AnyInput:
    """The typed input for a contact whose abnormal state is `abnormal` (see GpioInput)."""
    if name == "door":
        return DoorChanged(open=abnormal)
    if name == "lock_feedback":
        return LockFeedback(engaged=not abnormal)
    if name == "tamper":
        return TamperChanged(open=abnormal)
    return LeakChanged(wet=abnormal)


def pin_factory_for(name: str) -> Any:
    """The gpiozero pin factory named in config; None lets gpiozero pick its default."""
    if name == "default":
        return None
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        # Share the process-wide mock so whoever drives the pins (tests, a bench
        # script) and this driver see the same MockPin objects.
        if not isinstance(Device.pin_factory, MockFactory):
            Device.pin_factory = MockFactory()
        return Device.pin_factory
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    raise ValueError(f"unknown pin factory {name!r}")


@dataclass
class _Contact:
    name: ContactName
    config: GpioInput
    device: Any  # gpiozero.DigitalInputDevice (untyped library)
    settle_ms: int
    debouncer: Debouncer | None = None  # created at start from the line's level then

    def abnormal(self) -> bool:
        # Read the raw level rather than gpiozero's is_active: gpiozero ties the active
        # level to the pull resistor, our config keeps the two independent.
        level_high = bool(self.device.pin.state)
        active = level_high == self.config.active_high
        return active != self.config.normally_closed


class GpioDriver:
    """Contacts and outputs on GPIO lines; `GpioDriver(config)`, then `start(post)`."""

    name = "gpio"

    def __init__(
        self,
        config: GpioConfig,
        *,
        pin_factory: Any = None,
        clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        self.config = config
        self._clock = clock
        self._factory = (
            pin_factory if pin_factory is not None else pin_factory_for(config.pin_factory)
        )
        self._cond = threading.Condition()
        self._post: Post | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._contacts: list[_Contact] = []
        self._outputs: dict[OutputName, Any] = {}
        self.post_failures = 0
        self.close_errors = 0
        try:
            self._open_lines()
        except BaseException:
            self.close()
            raise

    def _open_lines(self) -> None:
        # Outputs first: the relay is driven off (locked) at the earliest moment.
        for output, field in OUTPUT_LINES.items():
            wiring = getattr(self.config, field)
            if wiring is None:
                continue
            self._outputs[output] = OutputDevice(
                wiring.pin,
                active_high=wiring.active_high,
                initial_value=False,
                pin_factory=self._factory,
            )
        for name in CONTACTS:
            contact_config: GpioInput | None = getattr(self.config, name)
            if contact_config is None:
                continue
            device = DigitalInputDevice(
                contact_config.pin,
                pull_up=contact_config.pull_up,
                # gpiozero wants an active state only for a floating line; the level is
                # interpreted by _Contact.abnormal either way.
                active_state=True if contact_config.pull_up is None else None,
                bounce_time=None,
                pin_factory=self._factory,
            )
            settle = contact_config.debounce_ms
            contact = _Contact(
                name, contact_config, device, self.config.debounce_ms if settle is None else settle
            )
            edge = functools.partial(self._on_edge, contact)
            device.when_activated = edge
            device.when_deactivated = edge
            self._contacts.append(contact)

    def counters(self) -> dict[str, int]:
        return {"post_failures": self.post_failures, "close_errors": self.close_errors}

    def outputs(self) -> frozenset[OutputName]:
        return frozenset(self._outputs)

    def start(self, post: Post) -> None:
        with self._cond:
            if self._post is not None or self._closing:
                raise RuntimeError("GpioDriver can be started once")
            self._post = post
            now = self._clock()
            initial = []
            for contact in self._contacts:
                abnormal = contact.abnormal()
                contact.debouncer = Debouncer(contact.settle_ms, abnormal, now)
                initial.append((contact, abnormal))
        for contact, abnormal in initial:
            self._deliver(contact, abnormal, initial=True)
        self._thread = threading.Thread(target=self._settle_loop, name="gpio-debounce", daemon=True)
        self._thread.start()

    def apply(self, output: OutputName, on: bool) -> None:
        device = self._outputs.get(output)
        if device is None:
            raise ValueError(f"no GPIO line is configured for output {output!r}")
        with self._cond:
            if self._closing:
                raise RuntimeError("GpioDriver is closed")
            if on:
                device.on()
            else:
                device.off()
        log.info("gpio.output", output=output, on=on)

    def close(self) -> None:
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
            # Fail-secure before anything else: relay, fan, buzzer and LEDs off.
            for output, device in self._outputs.items():
                self._release(device, output, switch_off=True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for contact in self._contacts:
            self._release(contact.device, contact.name, switch_off=False)
        log.info("gpio.closed")

    def _release(self, device: Any, what: str, *, switch_off: bool) -> None:
        try:
            if switch_off:
                device.off()
            device.close()
        except (GPIOZeroError, OSError) as exc:
            self.close_errors += 1
            log.error("gpio.close_failed", line=what, error=str(exc))

    def _on_edge(self, contact: _Contact) -> None:
        # Called by gpiozero (its own thread on a Pi, the caller's thread with MockPin).
        with self._cond:
            if contact.debouncer is None or self._closing:
                return  # before start the initial read covers it; after close, nothing
            contact.debouncer.feed(contact.abnormal(), self._clock())
            self._cond.notify()

    def _settle_loop(self) -> None:
        while True:
            with self._cond:
                settled = self._wait_for_settled()
                if settled is None:
                    return
            for contact, abnormal in settled:
                self._deliver(contact, abnormal, initial=False)

    def _wait_for_settled(self) -> list[tuple[_Contact, bool]] | None:
        """Under the lock: block until some contact settles (None once closing)."""
        while not self._closing:
            now = self._clock()
            settled: list[tuple[_Contact, bool]] = []
            due: list[int] = []
            for contact in self._contacts:
                assert contact.debouncer is not None
                level = contact.debouncer.poll(now)
                if level is not None:
                    settled.append((contact, level))
                elif (when := contact.debouncer.due_ms()) is not None:
                    due.append(when)
            if settled:
                return settled
            self._cond.wait(None if not due else max(0, min(due) - now) / 1000)
        return None

    def _deliver(self, contact: _Contact, abnormal: bool, *, initial: bool) -> None:
        assert self._post is not None
        event = contact_input(contact.name, abnormal)
        log.info("gpio.contact", contact=contact.name, abnormal=abnormal, initial=initial)
        try:
            self._post(event)
        except Exception as exc:  # the inbox's failure must not kill the debounce thread
            self.post_failures += 1
            log.error("gpio.post_failed", contact=contact.name, error=repr(exc))
