"""What the rules ask the world to do: emit an event, set an output, manage a timer.

The core performs them in order, with one rule that matters for safety: every
`SetOutput` is applied only after the events emitted before it are committed to the
outbox (write-ahead), so no unlock or fan change happens without its durable record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rules.timers import TimerKey
from rules.vocabulary import EventType

OutputName = Literal["lock", "fan", "buzzer", "led_green", "led_red"]
Severity = Literal["info", "warning", "alarm"]


@dataclass(frozen=True, slots=True)
class Emit:
    type: EventType
    sev: Severity
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SetOutput:
    """`lock` on = relay energised = bolt released (fail-secure: off is locked)."""

    output: OutputName
    on: bool


@dataclass(frozen=True, slots=True)
class StartTimer:
    key: TimerKey
    at_ms: int  # on the rules' monotonic time base (Instant.mono_ms)


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: TimerKey


@dataclass(frozen=True, slots=True)
class Instant:
    """The time of a step: wall clock for records and validity dates, monotonic for timers."""

    wall_ms: int
    mono_ms: int


@dataclass(frozen=True, slots=True)
class Republish:
    """`resend` command: publish the outbox range again (the uplink does it)."""

    from_seq: int
    to_seq: int


@dataclass(slots=True)
class PersistPolicy:
    """Store the accepted signed policy so it is enforced after a restart."""

    document: dict[str, Any]  # the signed policy JSON, as received
    version: int
    persisted: bool = field(default=False, compare=False)  # set by the core once written


Effect = Emit | SetOutput | StartTimer | CancelTimer | Republish | PersistPolicy
