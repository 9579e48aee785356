"""Open alarms: unique ids, raise once per condition, clear when it is gone, ack silences.

An alarm is keyed by its kind and subject (`sensor_fault` of `voc`, `overdue_return` of
a container): raising an open key again does nothing, so a flapping input cannot flood
the operators. Conditions clear by themselves when the rules see them gone; one-shot
alarms (an event in the past, like a withdrawal above its approval) have no condition
to wait for, so an operator's ack clears them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rules.effects import Effect, Emit, Instant

# Alarms that mean "someone must come now": they sound the buzzer until acked.
SOUNDING = frozenset(
    {
        "door_forced",
        "door_held_open",
        "mass_unexplained",
        "mass_mismatch",
        "unknown_item",
        "overdue_return",
        "voc_high",
        "leak",
        "tamper",
        "brute_force",
    }
)
# Alarms about something that happened, not a state that persists.
ONE_SHOT = frozenset({"mass_mismatch"})


@dataclass
class OpenAlarm:
    id: str
    kind: str
    subject: str
    since_ms: int
    acked: bool = False


class AlarmBook:
    def __init__(self) -> None:
        self._open: dict[tuple[str, str], OpenAlarm] = {}
        self._count = 0
        self.boot = 1

    def raise_(
        self, out: list[Effect], now: Instant, kind: str, subject: str = "", **details: Any
    ) -> str | None:
        key = (kind, subject)
        if key in self._open:
            return None
        self._count += 1
        alarm = OpenAlarm(f"A{self.boot}-{self._count}", kind, subject, now.wall_ms)
        self._open[key] = alarm
        out.append(Emit("alarm.raised", "alarm", {"alarm": alarm.id, "kind": kind, **details}))
        return alarm.id

    def clear(self, out: list[Effect], kind: str, subject: str = "", **details: Any) -> bool:
        alarm = self._open.pop((kind, subject), None)
        if alarm is None:
            return False
        out.append(Emit("alarm.cleared", "info", {"alarm": alarm.id, "kind": kind, **details}))
        return True

    def ack(self, out: list[Effect], alarm_id: str) -> bool:
        for key, alarm in self._open.items():
            if alarm.id == alarm_id:
                alarm.acked = True
                if alarm.kind in ONE_SHOT:
                    self.clear(out, *key, reason="acknowledged")
                return True
        return False

    def is_open(self, kind: str, subject: str = "") -> bool:
        return (kind, subject) in self._open

    def open_alarms(self) -> list[OpenAlarm]:
        return sorted(self._open.values(), key=lambda a: a.since_ms)

    @property
    def buzzer_wanted(self) -> bool:
        return any(a.kind in SOUNDING and not a.acked for a in self._open.values())

    @property
    def any_open(self) -> bool:
        return bool(self._open)
