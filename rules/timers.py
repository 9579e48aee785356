"""Timer keys: what a timer is for, typed, so a fired timer is dispatched by its type.

The core keeps one timer per key (starting a key again moves it) and feeds back
`TimerFired(key)` when it is due. Keys are values: `Settle(3)` started twice is one timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Timer(Enum):
    """Timers of which there is only ever one."""

    PAIR = "pair"  # the second badge's window
    LOCKOUT = "lockout"  # end of a brute-force lockout
    UNLOCK = "unlock"  # the relay's window for the door to open
    DOOR_HELD = "door_held"  # door open too long
    RECONCILE = "reconcile"  # weights settled after a session's door closed
    TELEMETRY = "telemetry"  # next env.reading
    START_CHECK = "start_check"  # restored alarms re-checked against fresh readings
    VOC_RAISE = "voc_raise"  # VOC above the alarm level for voc_hold_s
    VOC_CLEAR = "voc_clear"  # VOC below the clear level for voc_hold_s
    TAP_OUT = "tap_out"  # both persons should have badged out by now


@dataclass(frozen=True, slots=True)
class Settle:
    """A slot's weight held still for settle_s."""

    slot: int


@dataclass(frozen=True, slots=True)
class Overdue:
    """A removed container's return deadline."""

    container: str


@dataclass(frozen=True, slots=True)
class Stale:
    """A sensor silent for sensor_stale_s."""

    sensor: str


TimerKey = Timer | Settle | Overdue | Stale
