"""A cabinet record held in memory, shaped exactly like the store's read API (central/web/ports.py).

The web layer's own tests need records they can set up row by row (an alarm raised now,
a ledger row with Chinese text); the store's behaviour itself is tested by the store's
own suite, and the whole chain (agent → broker → ingest → store → console) by the
end-to-end browser tests. Row classes carry the field names of the seam.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from typing import Any

from central.errors import CentralError
from central.store.store import StoreUnavailable


@dataclass(frozen=True)
class User:
    login: str
    person: str
    role: str


@dataclass(frozen=True)
class Cabinet:
    device: str
    site: str
    online: bool
    boot: int
    last_seq: int
    last_seen_ms: int
    open_alarms: int = 0
    last_heartbeat_ms: int | None = None
    outbox_unsent: int | None = 0
    missing: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Alarm:
    device: str
    alarm: str
    kind: str
    raised_ms: int
    acked_by: str | None = None
    ack_comment: str | None = None
    cleared_ms: int | None = None
    clear_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlarmStep:
    ts_ms: int
    what: str
    by: str | None
    comment: str | None
    seq: int


@dataclass(frozen=True)
class Book:
    device: str
    slot: int
    container: str
    cas: str
    name: str
    cls: str
    book_mg: int
    measured_mg: int | None
    as_of_seq: int


@dataclass(frozen=True)
class SessionRow:
    session: str
    persons: list[str]
    granted_ms: int
    closed_ms: int | None
    mode: str


@dataclass(frozen=True)
class LedgerRow:
    ts_ms: int
    device: str
    session: str | None
    kind: str
    container: str
    cas: str
    name: str
    amount_mg: int
    book_mg: int
    persons: list[str]
    approval: str | None
    approver: str | None
    purpose: str | None
    seq: int


@dataclass(frozen=True)
class DailyRow:
    day: datetime.date
    device: str
    container: str
    name: str | None
    opening_mg: int
    withdrawn_mg: int
    returned_mg: int
    received_mg: int
    disposed_mg: int
    adjusted_mg: int
    closing_mg: int
    measured_mg: int | None
    ok: bool


@dataclass(frozen=True)
class Quarantined:
    device: str | None
    seq: int | None
    received_ms: int
    reason: str
    payload: str


@dataclass(frozen=True)
class Pending:
    device: str
    person: str
    reader: str
    expires_at_ms: int


@dataclass(frozen=True)
class CommandAnswer:
    result: str
    reason: str | None
    seq: int | None


class MemoryRecord:
    """The store's read side over lists a test fills; every change grows the change mark."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.users: dict[str, tuple[User, str]] = {}
        self.tokens: dict[str, User] = {}
        self.cabinet_rows: list[Cabinet] = []
        self.alarm_rows: list[Alarm] = []
        self.steps: dict[tuple[str, str], list[AlarmStep]] = {}
        self.envelopes: dict[str, list[bytes]] = {}
        self.book_rows: list[Book] = []
        self.session_rows: dict[str, list[SessionRow]] = {}
        self.ledger_rows: list[LedgerRow] = []
        self.daily_rows: dict[datetime.date, list[DailyRow]] = {}
        self.daily_asked: list[tuple[datetime.date, str]] = []
        self.quarantine_rows: list[Quarantined] = []
        self.pending: list[Pending] = []
        self.names: dict[str, str] = {}
        self.mark = 0
        self.down = False
        self.cabinet_reads = 0

    # -- filling it, as a test does --
    def add_user(self, login: str, person: str, role: str, password: str) -> None:
        self.users[login] = (User(login, person, role), password)

    def add_token(self, login: str, token: str) -> None:
        self.tokens[token] = self.users[login][0]

    def changed(self) -> None:
        with self._lock:
            self.mark += 1

    # -- the store's read API --
    def _up(self) -> None:
        if self.down:
            raise StoreUnavailable("database unavailable: connection refused")

    def check_password(self, login: str, password: str) -> User | None:
        found = self.users.get(login)
        return found[0] if found and found[1] == password else None

    def user_for_token(self, token: str) -> User | None:
        return self.tokens.get(token)

    def cabinets(self) -> list[Cabinet]:
        self._up()
        self.cabinet_reads += 1
        return list(self.cabinet_rows)

    def alarms(self, state: str = "open", device: str | None = None) -> list[Alarm]:
        self._up()
        return [
            a
            for a in self.alarm_rows
            if (state == "all" or a.cleared_ms is None) and device in (None, a.device)
        ]

    def alarm_history(self, device: str, alarm: str) -> list[AlarmStep]:
        return list(self.steps.get((device, alarm), []))

    def events(self, device: str, from_seq: int = 1, limit: int = 100) -> list[bytes]:
        return self.envelopes.get(device, [])[from_seq - 1 : from_seq - 1 + limit]

    def books(self, device: str | None = None) -> list[Book]:
        return [b for b in self.book_rows if device in (None, b.device)]

    def sessions(self, device: str, limit: int = 20) -> list[SessionRow]:
        return self.session_rows.get(device, [])[:limit]

    def ledger(
        self,
        since_ms: int | None = None,
        until_ms: int | None = None,
        device: str | None = None,
        container: str | None = None,
        person: str | None = None,
    ) -> list[LedgerRow]:
        return [
            r
            for r in self.ledger_rows
            if (since_ms is None or r.ts_ms >= since_ms)
            and (until_ms is None or r.ts_ms < until_ms)
            and device in (None, r.device)
            and container in (None, r.container)
            and (person is None or person in r.persons)
        ]

    def daily(self, day: datetime.date, tz: str) -> list[DailyRow]:
        self.daily_asked.append((day, tz))
        return self.daily_rows.get(day, [])

    def quarantine(self) -> list[Quarantined]:
        return list(self.quarantine_rows)

    def pending_approvals(self, now_ms: int) -> list[Pending]:
        return [p for p in self.pending if p.expires_at_ms > now_ms]

    def person_name(self, device: str, person_id: str) -> str | None:
        return self.names.get(person_id)

    def change_mark(self) -> int:
        self._up()
        return self.mark


class RecordingGateway:
    """Answers every command as the test says, and remembers what was asked to be signed."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.answer = CommandAnswer("applied", None, 42)
        self.broker_down = False

    def send(
        self, device: str, name: str, args: dict[str, Any], by: str, timeout_s: float = 10
    ) -> CommandAnswer:
        if self.broker_down:
            raise CentralError(f"command {name!r} to {device}: broker unreachable")
        self.sent.append(
            {"device": device, "name": name, "args": args, "by": by, "timeout_s": timeout_s}
        )
        return self.answer
