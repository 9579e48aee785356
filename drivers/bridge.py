"""The cabinet MCU over its serial bridge (firmware_bridge): door, scales, lock, tamper, leak.

The MCU reports; this driver turns its reports into typed inputs, and the core's outputs
into LOCK/OUTPUT commands. It decides nothing. What it adds is bookkeeping the rules
cannot see from here:

- inputs are posted when they change (a resync snapshot repeats the state we already
  posted, and must not look like a second door opening);
- one `mcu` sensor fault stands for everything that makes the board untrustworthy (link
  silent, failsafe tripped, a command refused or unanswered) and recovers only when all
  of those are gone;
- after a new session (reconnection, MCU reboot) the wanted fan/buzzer/LED states are
  sent again, because a rebooted MCU starts with everything off. An unlock is never
  repeated: a late unlock is worse than none; the rules decide again.
"""

from __future__ import annotations

import dataclasses
import threading

import structlog

from config.hardware import BridgeConfig
from drivers.base import Post
from firmware_bridge.codes import FaultCode, OutputId
from firmware_bridge.link import (
    CommandConfirmed,
    CommandFailed,
    LinkDown,
    LinkEvent,
    LinkUp,
    McuLink,
    Received,
)
from firmware_bridge.messages import (
    Door,
    Fault,
    Leak,
    LockCommand,
    LockState,
    Message,
    OutputCommand,
    Tamper,
    Weights,
)
from rules.effects import OutputName
from rules.inputs import (
    AnyInput,
    DoorChanged,
    LeakChanged,
    LockFeedback,
    SensorFault,
    SensorRecovered,
    TamperChanged,
    WeightReading,
)

log = structlog.get_logger("drivers.bridge")

MCU_SENSOR = "mcu"
OUTPUT_IDS: dict[OutputName, OutputId] = {
    "fan": OutputId.FAN,
    "buzzer": OutputId.BUZZER,
    "led_green": OutputId.LED_GREEN,
    "led_red": OutputId.LED_RED,
}


class BridgeDriver:
    """`BridgeDriver(config)`, then `start(post)`; `apply()` from the core; `close()`."""

    name = "bridge"

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._post: Post | None = None
        self._link: McuLink | None = None
        self._posted: dict[str, bool] = {}  # last posted door/lock/tamper/leak state
        self._faults: dict[str, str] = {}  # why the mcu sensor is faulty, by cause
        self._wanted: dict[OutputName, bool] = {}
        self.post_failures = 0

    def outputs(self) -> frozenset[OutputName]:
        return frozenset(self.config.outputs)

    def start(self, post: Post) -> None:
        if self._link is not None:
            raise RuntimeError("BridgeDriver can be started once")
        self._post = post
        self._link = McuLink(
            self.config.port,
            self._on_link_event,
            baudrate=self.config.baudrate,
            heartbeat_ms=self.config.heartbeat_ms,
            # Our patience for the MCU's silence mirrors the MCU's for ours.
            silence_ms=self.config.failsafe_ms,
            ack_timeout_ms=self.config.ack_timeout_ms,
            retries=self.config.retries,
        )
        self._link.start()

    def counters(self) -> dict[str, int]:
        """The serial link's counts (reported in status.json like every driver's)."""
        link = self._link
        if link is None:
            return {}
        return {**dataclasses.asdict(link.stats), "retransmits": link.retransmits}

    def apply(self, output: OutputName, on: bool) -> None:
        if output not in self.config.outputs:
            raise ValueError(f"output {output!r} is not wired to the MCU")
        link = self._link
        if link is None:
            raise RuntimeError("BridgeDriver is not started")
        with self._lock:
            self._wanted[output] = on
        log.info("bridge.output", output=output, on=on)
        self._send(link, output, on)

    def close(self) -> None:
        """Lock and switch everything off, wait briefly for the ACKs, stop heartbeating.

        If the MCU does not confirm, stopping the heartbeats still makes it lock by itself
        within failsafe_ms: the cabinet is never left unlocked by a stopping agent.
        """
        link, self._link = self._link, None
        if link is None:
            return
        for output in self.config.outputs:
            self._send(link, output, False)
        budget_s = self.config.ack_timeout_ms * (self.config.retries + 1) / 1000
        if not link.wait_idle(min(budget_s, 3.0)):
            log.warning("bridge.close_unconfirmed")
        link.close()
        log.info("bridge.closed")

    def _send(self, link: McuLink, output: OutputName, on: bool) -> None:
        retry_window_ms = self.config.ack_timeout_ms * (self.config.retries + 1)
        if output == "lock":
            # An unlock that waited in the queue longer than one retry cycle is stale.
            hold_ms = self.config.unlock_max_ms if on else 0
            link.send(LockCommand(on, hold_ms), expires_in_ms=retry_window_ms if on else None)
        else:
            link.send(OutputCommand(OUTPUT_IDS[output], on))

    # --- from the link thread ---------------------------------------------------------------

    def _on_link_event(self, event: LinkEvent) -> None:
        if isinstance(event, Received):
            self._on_report(event.message)
        elif isinstance(event, LinkUp):
            self._clear_fault("link")
            self._resend_wanted()
        elif isinstance(event, LinkDown):
            self._set_fault("link", f"link {event.reason}")
        elif isinstance(event, CommandConfirmed):
            self._clear_fault("command")
        elif isinstance(event, CommandFailed):
            self._set_fault("command", f"{_describe(event.message)} failed: {event.reason}")

    def _on_report(self, message: Message) -> None:
        if isinstance(message, Weights):
            for reading in message.readings:
                self._deliver(WeightReading(slot=reading.slot, mg=reading.mg))
        elif isinstance(message, Door):
            self._changed("door", message.active, DoorChanged(open=message.active))
        elif isinstance(message, LockState):
            engaged = message.bolt_engaged
            self._changed("lock", engaged, LockFeedback(engaged=engaged))
        elif isinstance(message, Tamper):
            self._changed("tamper", message.active, TamperChanged(open=message.active))
        elif isinstance(message, Leak):
            self._changed("leak", message.active, LeakChanged(wet=message.active))
        elif isinstance(message, Fault):
            self._on_fault(message)

    def _on_fault(self, fault: Fault) -> None:
        if fault.code == FaultCode.SCALE:
            sensor = f"scale:{fault.detail}"
            if fault.active:
                self._deliver(SensorFault(sensor=sensor, detail="mcu reports scale fault"))
            else:
                self._deliver(SensorRecovered(sensor=sensor))
            return
        if fault.code == FaultCode.HEARTBEAT_LOST:
            cause, detail = "failsafe", "failsafe tripped: agent heartbeats lost, relay off"
        else:
            cause = f"fault:{fault.code}"
            detail = f"mcu fault {_fault_name(fault.code)} ({fault.detail})"
        if fault.active:
            self._set_fault(cause, detail)
        else:
            self._clear_fault(cause)

    def _resend_wanted(self) -> None:
        link = self._link
        if link is None:
            return
        with self._lock:
            wanted = dict(self._wanted)
        for output, on in wanted.items():
            if output == "lock" and on:
                continue
            self._send(link, output, on)

    # Posting under the lock keeps fault/recovery and state changes in the order decided,
    # whichever thread (link thread, or the core's through apply) got there first.

    def _changed(self, key: str, value: bool, item: AnyInput) -> None:
        with self._lock:
            if self._posted.get(key) == value:
                return
            self._posted[key] = value
            self._deliver(item)

    def _set_fault(self, cause: str, detail: str) -> None:
        log.warning("bridge.fault", cause=cause, detail=detail)
        with self._lock:
            first = not self._faults
            self._faults[cause] = detail
            if first:
                self._deliver(SensorFault(sensor=MCU_SENSOR, detail=detail))

    def _clear_fault(self, cause: str) -> None:
        with self._lock:
            if cause not in self._faults:
                return
            del self._faults[cause]
            if not self._faults:
                log.info("bridge.recovered", cause=cause)
                self._deliver(SensorRecovered(sensor=MCU_SENSOR))

    def _deliver(self, item: AnyInput) -> None:
        post = self._post
        if post is None:
            return
        try:
            post(item)
        except Exception as exc:  # the inbox must not take the link thread down with it
            self.post_failures += 1
            log.error("bridge.post_failed", input=repr(item), error=str(exc))


def _fault_name(code: int) -> str:
    try:
        return FaultCode(code).name.lower()
    except ValueError:  # newer firmware: still a fault, by number
        return str(code)


def _describe(message: Message) -> str:
    if isinstance(message, LockCommand):
        return "unlock" if message.energise else "lock"
    if isinstance(message, OutputCommand):
        return f"{message.output.name.lower()} {'on' if message.on else 'off'}"
    return type(message).__name__
