"""Open alarms: unique ids, raise once per condition, clear when it is gone, ack silences.

An alarm is keyed by its kind and subject (`sensor_fault` of `voc`, `overdue_return` of
a container): raising an open key again does nothing, so a flapping input cannot flood
the operators. Conditions clear by themselves when the rules see them gone. An `ack`
only silences (buzzer off, `alarm.acknowledged`): a mass alarm is a discrepancy of the
books and stays open until the weight is back or the books are corrected.

Ids are `A<boot>-<n>`: the boot number grows at every start, so an id is unique for the
device's life, and alarms restored after a restart keep the id they were raised with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rules.effects import Effect, Emit, Instant
from rules.vocabulary import ALARM_KINDS, AlarmKind

# Alarms that mean "someone must come now": they sound the buzzer until acked.
SOUNDING: frozenset[AlarmKind] = frozenset(
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
        "two_person_breach",
    }
)
# Alarms about something that happened, with no condition to wait for: an ack, having
# recorded who saw it, closes them. (A discrepancy of the books never closes this way.)
CLOSED_BY_ACK: frozenset[AlarmKind] = frozenset({"two_person_breach"})
# Discrepancies of the books (docs/protocol.md, "Vocabulary"): an ack never closes them.
MASS_KINDS: frozenset[AlarmKind] = frozenset({"mass_unexplained", "mass_mismatch", "unknown_item"})
CONDITION_GONE_AT_START = "condition_gone_at_start"


@dataclass
class OpenAlarm:
    id: str
    kind: AlarmKind
    subject: str
    since_ms: int
    acked: bool = False
    slot: int | None = None  # what a mass alarm is about, for `resolve`
    container: str | None = None


class AlarmBook:
    def __init__(self) -> None:
        self._open: dict[tuple[AlarmKind, str], OpenAlarm] = {}
        self._count = 0
        self.boot = 1
        # Ids restored at start whose condition has not yet been re-checked against
        # fresh readings: a clear in that window says `condition_gone_at_start`.
        self.unchecked: set[str] = set()

    def raise_(
        self, out: list[Effect], now: Instant, kind: AlarmKind, subject: str = "", **details: Any
    ) -> str | None:
        key = (kind, subject)
        existing = self._open.get(key)
        if existing is not None:
            self.unchecked.discard(existing.id)  # its condition still holds: kept as is
            return None
        self._count += 1
        alarm = OpenAlarm(f"A{self.boot}-{self._count}", kind, subject, now.wall_ms)
        alarm.slot, alarm.container = details.get("slot"), details.get("container")
        self._open[key] = alarm
        out.append(Emit("alarm.raised", "alarm", {"alarm": alarm.id, "kind": kind, **details}))
        return alarm.id

    def clear(self, out: list[Effect], kind: AlarmKind, subject: str = "", **details: Any) -> bool:
        alarm = self._open.pop((kind, subject), None)
        if alarm is None:
            return False
        if alarm.id in self.unchecked:
            self.unchecked.discard(alarm.id)
            details.setdefault("reason", CONDITION_GONE_AT_START)
        details.setdefault("reason", "condition_gone")
        out.append(Emit("alarm.cleared", "info", {"alarm": alarm.id, "kind": kind, **details}))
        return True

    def find(self, alarm_id: str) -> OpenAlarm | None:
        return next((a for a in self._open.values() if a.id == alarm_id), None)

    def ack(self, out: list[Effect], alarm_id: str, by: str | None, comment: str | None) -> bool:
        alarm = self.find(alarm_id)
        if alarm is None:
            return False
        alarm.acked = True
        out.append(
            Emit(
                "alarm.acknowledged",
                "info",
                {"alarm": alarm.id, "kind": alarm.kind, "by": by, "comment": comment},
            )
        )
        if alarm.kind in CLOSED_BY_ACK:
            self.clear(out, alarm.kind, alarm.subject)
        return True

    def resolved(self, out: list[Effect], alarm: OpenAlarm) -> None:
        self._open.pop((alarm.kind, alarm.subject), None)
        self.unchecked.discard(alarm.id)
        data = {"alarm": alarm.id, "kind": alarm.kind, "reason": "resolved"}
        out.append(Emit("alarm.cleared", "info", data))

    def is_open(self, kind: AlarmKind, subject: str = "") -> bool:
        return (kind, subject) in self._open

    def open_alarms(self) -> list[OpenAlarm]:
        return sorted(self._open.values(), key=lambda a: a.since_ms)

    @property
    def buzzer_wanted(self) -> bool:
        return any(a.kind in SOUNDING and not a.acked for a in self._open.values())

    @property
    def any_open(self) -> bool:
        return bool(self._open)

    # --- durable state ---------------------------------------------------------------

    def to_state(self) -> list[dict[str, Any]]:
        return [asdict(a) for a in self.open_alarms()]

    def restore(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["kind"] not in ALARM_KINDS:
                raise ValueError(f"unknown alarm kind {row['kind']!r}")
            alarm = OpenAlarm(**row)
            self._open[(alarm.kind, alarm.subject)] = alarm
            self.unchecked.add(alarm.id)

    def end_start_check(self) -> None:
        self.unchecked.clear()
