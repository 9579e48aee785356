"""Reference MCU firmware: the behaviour the cabinet firmware must have, without I/O.

`McuFirmware` is the firmware's main loop (what the C code does on each received byte
run and each timer tick), built on the same codec and `Channel` as the agent; bytes in,
bytes out, time passed in. firmware_bridge.mcu_sim runs it on a pty for the agent's real
serial link.

Fail-secure everywhere: the relay is off at boot, goes off by itself when the agent's
heartbeats stop for `failsafe_ms` or a LOCK command's hold time runs out, and cannot be
energised unless an agent heartbeat arrived within `failsafe_ms`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from firmware_bridge.codes import (
    PROTOCOL_VERSION,
    FaultCode,
    LockCause,
    McuStatus,
    NackReason,
    OutputId,
)
from firmware_bridge.messages import (
    Ack,
    Door,
    Fault,
    Heartbeat,
    Hello,
    Info,
    Leak,
    LockCommand,
    LockState,
    Message,
    OutputCommand,
    SlotWeight,
    Tamper,
    Weights,
)
from firmware_bridge.protocol import (
    Channel,
    ChannelEvent,
    Decoder,
    Deliver,
    Failed,
    Frame,
    FrameError,
    Transmit,
    encode,
)

# The firmware's own ceiling on one LOCK command's hold time: even a confused agent that
# keeps heartbeating cannot keep the bolt released longer than this.
DEFAULT_MAX_HOLD_MS = 60_000


@dataclass
class McuWorld:
    """The physical cabinet as the MCU's inputs see it."""

    door_open: bool = False
    tamper_open: bool = False
    leak_wet: bool = False
    weights_mg: dict[int, int] = field(default_factory=dict)
    faulty_scales: set[int] = field(default_factory=set)
    bolt_jammed: bool | None = None  # None: the bolt follows the relay


class McuFirmware:
    """The firmware state machine. Every method returns the bytes to write to the UART."""

    def __init__(
        self,
        *,
        slots: Mapping[int, int] | None = None,
        failsafe_ms: int = 3000,
        heartbeat_ms: int = 500,
        weights_ms: int = 500,
        ack_timeout_ms: int = 200,
        retries: int = 5,
        max_hold_ms: int = DEFAULT_MAX_HOLD_MS,
        version: tuple[int, int, int] = (1, 0, 0),
    ) -> None:
        self.world = McuWorld(weights_mg=dict(slots or {}))
        self.failsafe_ms = failsafe_ms
        self.heartbeat_ms = heartbeat_ms
        self.weights_ms = weights_ms
        self.max_hold_ms = max_hold_ms
        self.version = version
        self.channel = Channel(ack_timeout_ms=ack_timeout_ms, retries=retries)
        self.applied: list[Message] = []  # commands applied, in order (duplicates must not be)
        self.frame_errors = 0
        self.drop_acks = 0  # test hook: lose this many outgoing ACKs (line noise)
        self.boot(0)

    # --- lifecycle -------------------------------------------------------------------

    def boot(self, now_ms: int) -> bytes:
        """Power-on: relay off, outputs off, new session; announce INFO and a snapshot."""
        self.decoder = Decoder()
        self.channel.reset()
        self.boot_ms = now_ms
        self.relay_on = False
        self.hold_until_ms = 0
        self.outputs = dict.fromkeys(OutputId, False)
        self.last_agent_heartbeat_ms: int | None = None  # None: not armed
        self.failsafe_tripped = False
        self.events_lost = False
        self.next_heartbeat_ms = now_ms
        self.next_weights_ms = now_ms
        return self._announce(now_ms, LockCause.BOOT)

    @property
    def bolt_engaged(self) -> bool:
        jammed = self.world.bolt_jammed
        return (not self.relay_on) if jammed is None else jammed

    def armed(self, now_ms: int) -> bool:
        """Unlocking is allowed only while the agent is provably alive."""
        last = self.last_agent_heartbeat_ms
        return last is not None and not self.failsafe_tripped and now_ms - last < self.failsafe_ms

    def status(self) -> McuStatus:
        flags = McuStatus(0)
        for on, flag in (
            (self.world.door_open, McuStatus.DOOR_OPEN),
            (self.relay_on, McuStatus.RELAY_ON),
            (self.bolt_engaged, McuStatus.BOLT_ENGAGED),
            (self.world.tamper_open, McuStatus.TAMPER_OPEN),
            (self.world.leak_wet, McuStatus.LEAK_WET),
            (self.failsafe_tripped, McuStatus.FAILSAFE),
            (self.events_lost, McuStatus.EVENTS_LOST),
        ):
            if on:
                flags |= flag
        return flags

    # --- the main loop ---------------------------------------------------------------

    def receive(self, data: bytes, now_ms: int) -> bytes:
        out = bytearray()
        for item in self.decoder.feed(data):
            if isinstance(item, FrameError):
                self.frame_errors += 1
                reply = self.channel.answer_error(item)
                if reply is not None:
                    out += self._handle([reply], now_ms)
                continue
            out += self._handle(self.channel.receive(item, now_ms), now_ms)
        return bytes(out)

    def tick(self, now_ms: int) -> bytes:
        out = bytearray(self._handle(self.channel.poll(now_ms), now_ms))
        if self.relay_on and now_ms >= self.hold_until_ms:
            out += self._set_relay(False, LockCause.HOLD_EXPIRED, now_ms)
        last = self.last_agent_heartbeat_ms
        if last is not None and not self.failsafe_tripped and not self.armed(now_ms):
            # The agent is gone (crashed, hung, cable cut): lock by ourselves, then tell.
            self.failsafe_tripped = True
            out += self._set_relay(False, LockCause.FAILSAFE, now_ms)
            out += self._report(Fault(FaultCode.HEARTBEAT_LOST, True, now_ms - last), now_ms)
        if now_ms >= self.next_heartbeat_ms:
            self.next_heartbeat_ms = now_ms + self.heartbeat_ms
            uptime = (now_ms - self.boot_ms) % 2**32
            out += self._report(Heartbeat(uptime, int(self.status())), now_ms)
        if now_ms >= self.next_weights_ms:
            self.next_weights_ms = now_ms + self.weights_ms
            out += self._report(self._weights(), now_ms)
        return bytes(out)

    # --- changes in the simulated world ------------------------------------------------

    def set_door(self, is_open: bool, now_ms: int) -> bytes:
        return self._switch("door_open", is_open, Door(is_open), now_ms)

    def set_tamper(self, is_open: bool, now_ms: int) -> bytes:
        return self._switch("tamper_open", is_open, Tamper(is_open), now_ms)

    def set_leak(self, wet: bool, now_ms: int) -> bytes:
        return self._switch("leak_wet", wet, Leak(wet), now_ms)

    def set_weight(self, slot: int, mg: int) -> None:
        self.world.weights_mg[slot] = mg  # reported with the next periodic WEIGHTS

    def set_scale_fault(self, slot: int, active: bool, now_ms: int) -> bytes:
        if active == (slot in self.world.faulty_scales):
            return b""
        if active:
            self.world.faulty_scales.add(slot)
        else:
            self.world.faulty_scales.discard(slot)
        return self._report(Fault(FaultCode.SCALE, active, slot), now_ms)

    def jam_bolt(self, engaged: bool | None, now_ms: int) -> bytes:
        before = self.bolt_engaged
        self.world.bolt_jammed = engaged
        if self.bolt_engaged == before:
            return b""
        return self._report(LockState(self.relay_on, self.bolt_engaged, LockCause.FEEDBACK), now_ms)

    # --- internals ---------------------------------------------------------------------

    def _switch(self, attr: str, value: bool, report: Message, now_ms: int) -> bytes:
        if getattr(self.world, attr) == value:
            return b""
        setattr(self.world, attr, value)
        return self._report(report, now_ms)

    def _weights(self) -> Weights:
        readings = tuple(
            SlotWeight(slot, mg)
            for slot, mg in sorted(self.world.weights_mg.items())
            if slot not in self.world.faulty_scales
        )
        return Weights(readings)

    def _announce(self, now_ms: int, cause: LockCause) -> bytes:
        major, minor, patch = self.version
        slot_count = len(self.world.weights_mg)
        reports: list[Message] = [
            Info(PROTOCOL_VERSION, major, minor, patch, slot_count, self.failsafe_ms),
            Door(self.world.door_open),
            LockState(self.relay_on, self.bolt_engaged, cause),
            Tamper(self.world.tamper_open),
            Leak(self.world.leak_wet),
        ]
        reports += [Fault(FaultCode.SCALE, True, slot) for slot in sorted(self.world.faulty_scales)]
        out = bytearray()
        for report in reports:
            out += self._report(report, now_ms)
        out += self._report(self._weights(), now_ms)
        return bytes(out)

    def _report(self, message: Message, now_ms: int) -> bytes:
        return self._handle(self.channel.send(message, now_ms), now_ms)

    def _set_relay(self, on: bool, cause: LockCause, now_ms: int) -> bytes:
        if on == self.relay_on:
            return b""
        self.relay_on = on
        return self._report(LockState(on, self.bolt_engaged, cause), now_ms)

    def _handle(self, events: Iterable[ChannelEvent], now_ms: int) -> bytes:
        out = bytearray()
        for event in events:
            if isinstance(event, Transmit):
                out += self._transmit(event.frame)
            elif isinstance(event, Deliver):
                out += self._apply(event.frame, now_ms)
            elif isinstance(event, Failed):
                # The agent did not take a report: flag it in every heartbeat until the
                # agent asks for a fresh snapshot with HELLO.
                self.events_lost = True
        return bytes(out)

    def _transmit(self, frame: Frame) -> bytes:
        if self.drop_acks and isinstance(frame.message, Ack):
            self.drop_acks -= 1
            return b""
        return encode(frame)

    def _apply(self, frame: Frame, now_ms: int) -> bytes:
        message = frame.message
        if isinstance(message, Heartbeat):
            self.last_agent_heartbeat_ms = now_ms
            if self.failsafe_tripped:
                self.failsafe_tripped = False
                return self._report(Fault(FaultCode.HEARTBEAT_LOST, False, 0), now_ms)
            return b""
        if not message.RELIABLE:
            return b""  # nothing else unsequenced is meant for the MCU
        nack: NackReason | None = None
        if isinstance(message, Hello):
            if message.protocol != PROTOCOL_VERSION:
                nack = NackReason.UNSUPPORTED_VERSION
        elif isinstance(message, LockCommand):
            if message.energise and message.hold_ms == 0:
                nack = NackReason.INVALID_VALUE
            elif message.energise and not self.armed(now_ms):
                nack = NackReason.NOT_ARMED
        elif not isinstance(message, OutputCommand):
            nack = NackReason.UNKNOWN_MESSAGE  # an MCU->agent report sent to the MCU
        out = bytearray(self._transmit(self.channel.answer(frame, nack).frame))
        if nack is not None:
            return bytes(out)
        self.applied.append(message)
        if isinstance(message, Hello):
            self.events_lost = False
            out += self._announce(now_ms, LockCause.RESYNC)
        elif isinstance(message, LockCommand):
            if message.energise:
                self.hold_until_ms = now_ms + min(message.hold_ms, self.max_hold_ms)
            out += self._set_relay(message.energise, LockCause.COMMAND, now_ms)
        elif isinstance(message, OutputCommand):
            self.outputs[message.output] = message.on
        return bytes(out)
