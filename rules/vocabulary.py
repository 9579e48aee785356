"""The record's vocabulary as types: an event type or alarm kind that is not here is a
typo, and mypy says so (docs/protocol.md, "Vocabulary", lists the same words)."""

from __future__ import annotations

from typing import Literal, get_args

EventType = Literal[
    "system.started",
    "system.stopping",
    "system.heartbeat",
    "system.outbox_dropped",
    "system.warning",
    "system.warning_cleared",
    "system.reloaded",
    "system.reload_refused",
    "access.pending",
    "access.granted",
    "access.denied",
    "access.expired",
    "access.tapped_out",
    "access.closed",
    "lock.unlocked",
    "lock.locked",
    "door.opened",
    "door.closed",
    "inventory.withdrawal",
    "inventory.return",
    "inventory.removed",
    "inventory.restored",
    "inventory.received",
    "inventory.adjusted",
    "inventory.disposed",
    "inventory.stocktake",
    "inventory.snapshot",
    "env.reading",
    "env.voc_warning",
    "alarm.raised",
    "alarm.acknowledged",
    "alarm.cleared",
    "policy.applied",
    "policy.rejected",
    "command.applied",
    "command.rejected",
]

AlarmKind = Literal[
    "door_forced",
    "door_held_open",
    "mass_unexplained",
    "mass_mismatch",
    "overdue_return",
    "unknown_item",
    "voc_high",
    "leak",
    "tamper",
    "sensor_fault",
    "brute_force",
    "clock_unsynced",
    "reader_fault",
    "two_person_breach",
]

EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))
ALARM_KINDS: frozenset[str] = frozenset(get_args(AlarmKind))
