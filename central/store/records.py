"""What the store hands out: plain frozen dataclasses, never rows or ORM objects.

These are the read side of the seam with the web console (central/web/): every field
is a plain value (int milliseconds since the epoch in UTC, masses in milligrams, person
ids as the policy spells them), so the console decides how to show them (local time,
grams, names through `Store.person_name`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

ROLES = ("operator", "keeper", "safety_officer", "auditor", "admin")


@dataclass(frozen=True)
class User:
    login: str
    person: str  # the policy person id this account acts as (`by` of its commands)
    role: str  # one of ROLES


@dataclass(frozen=True)
class Cabinet:
    device: str
    site: str
    online: bool
    boot: int | None
    last_seq: int  # highest seq of the verified, gap-free record (0: nothing yet)
    last_seen_ms: int | None  # when anything of this device last reached the centre
    open_alarms: int = 0
    last_heartbeat_ms: int | None = None
    outbox_unsent: int | None = 0  # the device's backlog, from its last heartbeat
    missing: tuple[tuple[int, int], ...] = ()  # seq ranges stored after a gap (asked again)


@dataclass(frozen=True)
class Alarm:
    device: str
    alarm: str
    kind: str
    raised_ms: int
    acked_by: str | None = None  # an open, unacknowledged alarm has only the first four
    ack_comment: str | None = None
    cleared_ms: int | None = None
    clear_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlarmStep:
    ts_ms: int
    what: str  # raised | acknowledged | cleared
    by: str | None
    comment: str | None  # the ack comment, or the clear reason
    seq: int


@dataclass(frozen=True)
class Book:
    device: str
    slot: int | None
    container: str
    cas: str | None
    name: str | None
    cls: str | None
    book_mg: int | None
    measured_mg: int | None
    as_of_seq: int


@dataclass(frozen=True)
class SessionRow:
    session: str
    persons: tuple[str, ...]
    granted_ms: int
    closed_ms: int | None
    mode: str  # local | remote


@dataclass(frozen=True)
class LedgerRow:
    ts_ms: int
    device: str
    session: str | None
    kind: str  # withdrawal | return | received | disposed | adjusted
    container: str
    cas: str | None
    name: str | None
    amount_mg: int  # positive for a movement; the signed delta for an adjustment
    book_mg: int | None  # the book after this row
    persons: tuple[str, ...]
    approval: str | None  # nonce of the approval used
    approver: str | None
    purpose: str | None
    seq: int


@dataclass(frozen=True)
class DailyRow:
    day: datetime.date
    device: str
    container: str
    name: str | None
    opening_mg: int | None
    withdrawn_mg: int
    returned_mg: int
    received_mg: int
    disposed_mg: int
    adjusted_mg: int
    closing_mg: int | None
    measured_mg: int | None  # the last weighing of the day (snapshot, stocktake, delivery)
    # The movements explain the closing book, and the day's weighing (if any) agrees
    # with it. Without a weighing that day the books are only consistent with
    # themselves: `weighed` says whether the stock itself was looked at (账物相符 needs both).
    # A container disposed that day has no stock left: `measured_mg` None, `weighed` true.
    ok: bool
    weighed: bool = False


@dataclass(frozen=True)
class Quarantined:
    device: str | None
    seq: int | None
    received_ms: int
    reason: str
    payload: str  # the bytes as received, decoded for display (invalid UTF-8 replaced)
    topic: str | None = None


@dataclass(frozen=True)
class Pending:
    device: str
    person: str
    reader: str | None
    expires_at_ms: int
