"""The messages of the cabinet MCU protocol and their payload layouts (docs/firmware-bridge.md §4).

Each message is a small frozen dataclass that knows its id, whether it needs an ACK
(`RELIABLE`), and how to pack/unpack its payload. All integers are big-endian. Field
values are checked on construction, so a message that exists is a message that can be
encoded; `unpack` turns any malformed payload into `PayloadError`, never a struct error.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self, TypeVar

from firmware_bridge.codes import (
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    LockCause,
    McuStatus,
    MsgId,
    NackReason,
    OutputId,
    PayloadError,
)


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise PayloadError(what)


def _unsigned(value: int, bits: int, name: str) -> None:
    _check(isinstance(value, int) and 0 <= value < (1 << bits), f"{name} not u{bits}: {value!r}")


def _flag(raw: int, name: str) -> bool:
    # Booleans are exactly 0 or 1 on the wire: anything else is corruption, not "true".
    _check(raw in (0, 1), f"{name} must be 0 or 1, got {raw}")
    return raw == 1


_E = TypeVar("_E", bound=IntEnum)


def _enum(kind: type[_E], raw: int) -> _E:
    try:
        return kind(raw)
    except ValueError:
        raise PayloadError(f"{kind.__name__} {raw} unknown") from None


def _unpack(fmt: str, payload: bytes) -> tuple[int, ...]:
    _check(len(payload) == struct.calcsize(fmt), f"payload length {len(payload)} for {fmt}")
    return struct.unpack(fmt, payload)


class _Message:
    __slots__ = ()
    MSG_ID: ClassVar[MsgId]
    RELIABLE: ClassVar[bool]  # needs an ACK/NACK; retransmitted until answered
    RESYNC: ClassVar[bool] = False  # always applied (starts a session); resets duplicate check

    def pack(self) -> bytes:
        raise NotImplementedError

    def supersede_key(self) -> Hashable | None:
        """Queued commands with the same key are replaced by a newer one (only the last counts)."""
        return None


@dataclass(frozen=True, slots=True)
class Hello(_Message):
    MSG_ID = MsgId.HELLO
    RELIABLE = True
    RESYNC = True
    protocol: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _unsigned(self.protocol, 8, "protocol")

    def pack(self) -> bytes:
        return struct.pack(">B", self.protocol)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        return cls(*_unpack(">B", payload))

    def supersede_key(self) -> Hashable | None:
        return "hello"


@dataclass(frozen=True, slots=True)
class Info(_Message):
    MSG_ID = MsgId.INFO
    RELIABLE = True
    RESYNC = True
    protocol: int
    fw_major: int
    fw_minor: int
    fw_patch: int
    slot_count: int
    failsafe_ms: int

    def __post_init__(self) -> None:
        for name in ("protocol", "fw_major", "fw_minor", "fw_patch", "slot_count"):
            _unsigned(getattr(self, name), 8, name)
        _unsigned(self.failsafe_ms, 16, "failsafe_ms")

    def pack(self) -> bytes:
        return struct.pack(
            ">BBBBBH",
            self.protocol,
            self.fw_major,
            self.fw_minor,
            self.fw_patch,
            self.slot_count,
            self.failsafe_ms,
        )

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        return cls(*_unpack(">BBBBBH", payload))


@dataclass(frozen=True, slots=True)
class Heartbeat(_Message):
    MSG_ID = MsgId.HEARTBEAT
    RELIABLE = False
    uptime_ms: int  # sender's uptime modulo 2**32; going backwards means it rebooted
    flags: int = 0  # McuStatus from the MCU; 0 from the agent

    def __post_init__(self) -> None:
        _unsigned(self.uptime_ms, 32, "uptime_ms")
        _unsigned(self.flags, 8, "flags")

    @property
    def status(self) -> McuStatus:
        return McuStatus(self.flags)

    def pack(self) -> bytes:
        return struct.pack(">IB", self.uptime_ms, self.flags)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        return cls(*_unpack(">IB", payload))


@dataclass(frozen=True, slots=True)
class Ack(_Message):
    MSG_ID = MsgId.ACK
    RELIABLE = False
    seq: int  # the seq of the frame acknowledged

    def __post_init__(self) -> None:
        _check(isinstance(self.seq, int) and 1 <= self.seq <= 255, f"acked seq {self.seq!r}")

    def pack(self) -> bytes:
        return struct.pack(">B", self.seq)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        return cls(*_unpack(">B", payload))


@dataclass(frozen=True, slots=True)
class Nack(_Message):
    MSG_ID = MsgId.NACK
    RELIABLE = False
    seq: int
    reason: NackReason

    def __post_init__(self) -> None:
        _check(isinstance(self.seq, int) and 1 <= self.seq <= 255, f"nacked seq {self.seq!r}")
        _check(isinstance(self.reason, NackReason), f"reason {self.reason!r}")

    def pack(self) -> bytes:
        return struct.pack(">BB", self.seq, self.reason)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        seq, reason = _unpack(">BB", payload)
        return cls(seq, _enum(NackReason, reason))


@dataclass(frozen=True, slots=True)
class LockCommand(_Message):
    """Energise (release the bolt) for at most `hold_ms`, or de-energise (lock) now."""

    MSG_ID = MsgId.LOCK
    RELIABLE = True
    energise: bool
    hold_ms: int = 0  # energise: 1..MAX_HOLD_MS (the MCU clamps to its own cap); off: 0

    def __post_init__(self) -> None:
        _unsigned(self.hold_ms, 32, "hold_ms")

    def pack(self) -> bytes:
        return struct.pack(">BI", int(self.energise), self.hold_ms)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        energise, hold_ms = _unpack(">BI", payload)
        return cls(_flag(energise, "energise"), hold_ms)

    def supersede_key(self) -> Hashable | None:
        return "lock"


@dataclass(frozen=True, slots=True)
class OutputCommand(_Message):
    MSG_ID = MsgId.OUTPUT
    RELIABLE = True
    output: OutputId
    on: bool

    def __post_init__(self) -> None:
        _check(isinstance(self.output, OutputId), f"output {self.output!r}")

    def pack(self) -> bytes:
        return struct.pack(">BB", self.output, int(self.on))

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        output, on = _unpack(">BB", payload)
        return cls(_enum(OutputId, output), _flag(on, "on"))

    def supersede_key(self) -> Hashable | None:
        return ("output", int(self.output))


@dataclass(frozen=True, slots=True)
class SlotWeight:
    slot: int
    mg: int  # signed: a scale drifting below its zero reads negative, and that is data

    def __post_init__(self) -> None:
        _unsigned(self.slot, 8, "slot")
        _check(isinstance(self.mg, int) and -(2**31) <= self.mg < 2**31, f"mg {self.mg!r}")


_SLOT_WEIGHT = struct.Struct(">Bi")
MAX_WEIGHTS = (MAX_PAYLOAD - 1) // _SLOT_WEIGHT.size


@dataclass(frozen=True, slots=True)
class Weights(_Message):
    MSG_ID = MsgId.WEIGHTS
    RELIABLE = False  # periodic: the next reading replaces a lost one
    readings: tuple[SlotWeight, ...]

    def __post_init__(self) -> None:
        _check(len(self.readings) <= MAX_WEIGHTS, f"{len(self.readings)} > {MAX_WEIGHTS} slots")

    def pack(self) -> bytes:
        parts = [struct.pack(">B", len(self.readings))]
        parts.extend(_SLOT_WEIGHT.pack(r.slot, r.mg) for r in self.readings)
        return b"".join(parts)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        _check(len(payload) >= 1, "empty WEIGHTS")
        count = payload[0]
        _check(len(payload) == 1 + count * _SLOT_WEIGHT.size, f"WEIGHTS length for {count}")
        readings = tuple(
            SlotWeight(*_SLOT_WEIGHT.unpack_from(payload, 1 + i * _SLOT_WEIGHT.size))
            for i in range(count)
        )
        return cls(readings)


@dataclass(frozen=True, slots=True)
class _Switch(_Message):
    """A one-bit input report: sent on every change (reliable) and in the resync snapshot."""

    RELIABLE = True
    active: bool

    def pack(self) -> bytes:
        return struct.pack(">B", int(self.active))

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        (raw,) = _unpack(">B", payload)
        return cls(_flag(raw, cls.__name__))


@dataclass(frozen=True, slots=True)
class Door(_Switch):
    MSG_ID = MsgId.DOOR  # active = open


@dataclass(frozen=True, slots=True)
class Tamper(_Switch):
    MSG_ID = MsgId.TAMPER  # active = enclosure open


@dataclass(frozen=True, slots=True)
class Leak(_Switch):
    MSG_ID = MsgId.LEAK  # active = wet


@dataclass(frozen=True, slots=True)
class LockState(_Message):
    MSG_ID = MsgId.LOCK_STATE
    RELIABLE = True
    relay_on: bool  # relay energised = bolt released; off = locked (fail-secure)
    bolt_engaged: bool  # the lock's own feedback sensor
    cause: LockCause

    def __post_init__(self) -> None:
        _check(isinstance(self.cause, LockCause), f"cause {self.cause!r}")

    def pack(self) -> bytes:
        return struct.pack(">BBB", int(self.relay_on), int(self.bolt_engaged), self.cause)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        relay, bolt, cause = _unpack(">BBB", payload)
        return cls(_flag(relay, "relay_on"), _flag(bolt, "bolt_engaged"), _enum(LockCause, cause))


@dataclass(frozen=True, slots=True)
class Fault(_Message):
    MSG_ID = MsgId.FAULT
    RELIABLE = True
    code: int  # FaultCode, or a newer code this agent does not know
    active: bool  # raised (True) or cleared (False)
    detail: int = 0  # signed 32-bit, meaning per code

    def __post_init__(self) -> None:
        _unsigned(self.code, 8, "code")
        _check(isinstance(self.detail, int) and -(2**31) <= self.detail < 2**31, "detail")

    def pack(self) -> bytes:
        return struct.pack(">BBi", self.code, int(self.active), self.detail)

    @classmethod
    def unpack(cls, payload: bytes) -> Self:
        code, active, detail = _unpack(">BBi", payload)
        return cls(code, _flag(active, "active"), detail)


Message = (
    Hello
    | Info
    | Heartbeat
    | Ack
    | Nack
    | LockCommand
    | OutputCommand
    | Weights
    | Door
    | Tamper
    | Leak
    | LockState
    | Fault
)

MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.MSG_ID: cls
    for cls in (
        Hello,
        Info,
        Heartbeat,
        Ack,
        Nack,
        LockCommand,
        OutputCommand,
        Weights,
        Door,
        Tamper,
        Leak,
        LockState,
        Fault,
    )
}


def unpack_message(msg_id: int, payload: bytes) -> Message:
    """Raises PayloadError (also for an unknown id: callers tell the two apart by the id)."""
    kind = MESSAGE_TYPES.get(msg_id)
    if kind is None:
        raise PayloadError(f"unknown message id 0x{msg_id:02X}")
    try:
        return kind.unpack(payload)
    except struct.error as exc:  # defensive: _unpack checks lengths first
        raise PayloadError(str(exc)) from None
