"""`Store`: the one object the service, the ingest and the web console share.

    store = Store.open("sqlite:////var/lib/cabinet-central/central.db")  # or postgresql://
    store.migrate()
    store.cabinets(); store.alarms(state="open"); store.ledger(since_ms=...)

Reads return frozen dataclasses (records.py). Every call runs in its own short
transaction, so a store is safe to share between threads (the connection pool hands each
its own connection); several processes may open the same database. Failures of the
database itself surface as `StoreUnavailable` (the console shows "database down").
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

import central.store.people as people
import central.store.reads as reads
from agent.wire import GENESIS_PREV
from central.errors import CentralError
from central.projections.advance import advance
from central.projections.apply import Head
from central.store.engine import READ_ONLY, insert_ignore, make_engine, migrate, upsert
from central.store.gaps import ResendAsk, due_resends
from central.store.recording import (
    Presence,
    Rejected,
    Verified,
    bump_change_mark,
    record_batch,
)
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
from central.store.schema import PROJECTIONS, cabinets, meta, policy_names

T = TypeVar("T")


class StoreUnavailable(CentralError):
    """The database cannot be reached or refused the work; try again later."""


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = make_engine(url)

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(url)

    @property
    def backend(self) -> str:
        return self._engine.dialect.name

    def migrate(self) -> None:
        self._run(lambda _: migrate(self._engine), write=False)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, work: Callable[[Connection], T], *, write: bool = True) -> T:
        try:
            if write:
                with self._engine.begin() as conn:
                    return work(conn)
            with self._engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                result = work(conn)
                conn.rollback()
                return result
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(f"database unavailable: {_first_line(exc)}") from None
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailable(f"database connection lost: {_first_line(exc)}") from None
            raise

    def ping(self) -> bool:
        try:
            self._run(lambda c: c.execute(text("SELECT 1")).scalar(), write=False)
        except StoreUnavailable:
            return False
        return True

    # --- people ------------------------------------------------------------------------

    def add_user(self, login: str, person: str, role: str, password: str | None) -> User:
        return self._run(lambda c: people.add_user(c, login, person, role, password))

    def set_password(self, login: str, password: str) -> None:
        self._run(lambda c: people.set_password(c, login, password))

    def check_password(self, login: str, password: str) -> User | None:
        return self._run(lambda c: people.check_password(c, login, password), write=False)

    def create_token(self, login: str) -> str:
        return self._run(lambda c: people.create_token(c, login))

    def user_for_token(self, token: str) -> User | None:
        return self._run(lambda c: people.user_for_token(c, token), write=False)

    # --- reads (projections) -----------------------------------------------------------

    def cabinets(self) -> list[Cabinet]:
        return self._run(reads.cabinets_, write=False)

    def alarms(self, state: str = "open", device: str | None = None) -> list[Alarm]:
        return self._run(lambda c: reads.alarms_(c, state, device), write=False)

    def alarm_history(self, device: str, alarm: str) -> list[AlarmStep]:
        return self._run(lambda c: reads.alarm_history(c, device, alarm), write=False)

    def events(self, device: str, from_seq: int = 1, limit: int = 100) -> list[bytes]:
        return self._run(lambda c: reads.events_(c, device, from_seq, limit), write=False)

    def books(self, device: str | None = None) -> list[Book]:
        return self._run(lambda c: reads.books_(c, device), write=False)

    def sessions(self, device: str, limit: int = 20) -> list[SessionRow]:
        return self._run(lambda c: reads.sessions_(c, device, limit), write=False)

    def ledger(
        self,
        since_ms: int | None = None,
        until_ms: int | None = None,
        device: str | None = None,
        container: str | None = None,
        person: str | None = None,
    ) -> list[LedgerRow]:
        return self._run(
            lambda c: reads.ledger_(c, since_ms, until_ms, device, container, person), write=False
        )

    def daily(self, day: datetime.date, tz: str) -> list[DailyRow]:
        return self._run(lambda c: reads.daily(c, day, tz), write=False)

    def quarantine(self, limit: int = 1000) -> list[Quarantined]:
        return self._run(lambda c: reads.quarantine_(c, limit), write=False)

    def pending_approvals(self, now_ms: int) -> list[Pending]:
        return self._run(lambda c: reads.pending_(c, now_ms), write=False)

    def person_name(self, device: str, person_id: str) -> str | None:
        return self._run(lambda c: reads.person_name(c, device, person_id), write=False)

    def persons(self, device: str) -> list[tuple[str, str, tuple[str, ...]]]:
        return self._run(lambda c: reads.persons(c, device), write=False)

    def change_mark(self) -> int:
        return int(
            self._run(
                lambda c: c.execute(
                    select(meta.c.value).where(meta.c.key == "change_mark")
                ).scalar_one(),
                write=False,
            )
        )

    # --- writes (the ingest and the service) -------------------------------------------

    def record(
        self,
        verified: Sequence[Verified],
        rejected: Sequence[Rejected] = (),
        presence: Sequence[Presence] = (),
    ) -> list[str]:
        """Store a batch in one transaction (see recording.py); outcomes per envelope."""
        return self._run(lambda c: record_batch(c, verified, rejected, presence))

    def register_devices(self, devices: Iterable[tuple[str, str]]) -> None:
        """Make every registered (device, site) a cabinet, even before it says anything."""

        def work(conn: Connection) -> None:
            for device, site in devices:
                insert_ignore(
                    conn,
                    cabinets,
                    {
                        "device": device,
                        "site": site,
                        "online": False,
                        "projected_seq": 0,
                        "top_seq": 0,
                        "resend_asks": 0,
                    },
                )
                conn.execute(update(cabinets).where(cabinets.c.device == device).values(site=site))

        self._run(work)

    def set_policy_names(self, device: str, policy: Mapping[str, Any]) -> None:
        """Remember the names of one policy's persons and containers (for the console)."""
        version = policy.get("version") if type(policy.get("version")) is int else 0

        def work(conn: Connection) -> None:
            conn.execute(delete(policy_names).where(policy_names.c.device == device))
            for kind, key in (("person", "person"), ("container", "container")):
                for entry in policy.get(key) or []:
                    if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
                        continue
                    # a container's class (剧毒/易制爆), a person's roles ("keeper,user")
                    detail = entry.get("class") if kind == "container" else _roles(entry)
                    upsert(
                        conn,
                        policy_names,
                        {
                            "device": device,
                            "kind": kind,
                            "id": entry["id"],
                            "name": str(entry.get("name") or entry["id"]),
                            "detail": detail if isinstance(detail, str) else None,
                            "version": version,
                        },
                        ["device", "kind", "id"],
                    )

        self._run(work)

    def rebuild(self) -> int:
        """Recompute every projection from the stored record; return the envelopes replayed."""

        def reset(conn: Connection) -> list[str]:
            for table in PROJECTIONS:
                conn.execute(delete(table))
            conn.execute(
                update(cabinets).values(
                    projected_seq=0,
                    projected_hash=None,
                    boot=None,
                    last_heartbeat_ms=None,
                    outbox_unsent=None,
                )
            )
            return [str(d) for (d,) in conn.execute(select(cabinets.c.device))]

        # One transaction: readers see the old projections or the new, never half.
        def everything(conn: Connection) -> int:
            total = 0
            for device in reset(conn):
                head = Head(device, 0, GENESIS_PREV)
                total += advance(conn, head)
                conn.execute(
                    update(cabinets)
                    .where(cabinets.c.device == device)
                    .values(
                        projected_seq=head.seq,
                        projected_hash=head.hash,
                        boot=head.boot,
                        last_heartbeat_ms=head.last_heartbeat_ms,
                        outbox_unsent=head.outbox_unsent,
                    )
                )
            bump_change_mark(conn)
            return total

        return self._run(everything)

    def due_resends(
        self, now_ms: int, *, grace_ms: int, retry_ms: int, max_range: int
    ) -> list[ResendAsk]:
        """Missing ranges to ask the cabinets for now (see gaps.py); each asked by one process."""
        return self._run(
            lambda c: due_resends(
                c, now_ms, grace_ms=grace_ms, retry_ms=retry_ms, max_range=max_range
            )
        )

    def stored_record(self) -> list[tuple[str, int, bytes]]:
        """The whole stored record, (device, seq, payload) in order (`cabinetctl verify`)."""
        return self._run(reads.record, write=False)

    def head_seq(self, device: str) -> int:
        """The highest stored seq of a device (0 if none)."""
        return self._run(lambda c: reads.top_seq(c, device), write=False)

    def command_answer(
        self, device: str, nonce: str, types: Sequence[str], after_seq: int
    ) -> tuple[str, int, dict[str, Any]] | None:
        """The stored (verified) answer of a device to the command with this nonce."""
        return self._run(
            lambda c: reads.command_answer(c, device, nonce, types, after_seq), write=False
        )

    def connection(self) -> Any:
        """A transaction for the ingest's own bookkeeping (gap requests); context manager."""
        return self._engine.begin()


def _first_line(exc: BaseException) -> str:
    return (
        str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
    )


def _roles(person: Mapping[str, Any]) -> str | None:
    roles = person.get("roles")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        return None
    return ",".join(roles)
