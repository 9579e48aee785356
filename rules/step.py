"""One step's context: the time, the policy in force, the alarm book and where the
step's effects go — handed to each rule instead of the same four parameters threaded
by hand through every call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.policy import Policy
from rules.alarms import AlarmBook
from rules.effects import CancelTimer, Effect, Emit, Instant, Severity, StartTimer
from rules.timers import TimerKey
from rules.vocabulary import AlarmKind, EventType


@dataclass
class Step:
    now: Instant
    policy: Policy | None
    alarms: AlarmBook
    out: list[Effect]

    def emit(self, type: EventType, sev: Severity, data: dict[str, Any]) -> None:
        self.out.append(Emit(type, sev, data))

    def start(self, key: TimerKey, after_ms: int) -> None:
        """Start (or move) the timer `key` to fire `after_ms` from now."""
        self.out.append(StartTimer(key, self.now.mono_ms + after_ms))

    def cancel(self, key: TimerKey) -> None:
        self.out.append(CancelTimer(key))

    def raise_(self, kind: AlarmKind, subject: str = "", **details: Any) -> str | None:
        return self.alarms.raise_(self.out, self.now, kind, subject, **details)

    def clear(self, kind: AlarmKind, subject: str = "", **details: Any) -> bool:
        return self.alarms.clear(self.out, kind, subject, **details)
