"""A cabinet record held in memory, answering the store's read API (central/web/ports.py)
with the store's own row classes.

The web layer's own tests need records they can set up row by row (an alarm raised now,
a ledger row with Chinese text); the store's behaviour itself is tested by the store's
own suite, and the whole chain (agent → broker → ingest → store → console) by the
end-to-end browser tests. Row classes carry the field names of the seam.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

from central.errors import CentralError
from central.ingest.commands import CommandAnswer
from central.store.records import (
    Alarm,
    AlarmStep,
    Book,
    Cabinet,
    DailyRow,
    LedgerRow,
    Pending,
    Quarantined,
    SessionRow,
    User,
)
from central.store.store import StoreUnavailable


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
        self.roles: dict[str, tuple[str, ...]] = {}
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

    def persons(self, device: str) -> list[tuple[str, str, tuple[str, ...]]]:
        people = [(p, name, self.roles.get(p, ())) for p, name in self.names.items()]
        return sorted(people, key=lambda person: (person[1], person[0]))

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
