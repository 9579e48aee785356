"""The read side of the store: projections as frozen records (see records.py).

Each function takes a connection and returns plain values; `Store` wraps them. Names of
persons and containers come from `policy_names` (the policy in force for that device,
or a policy for any cabinet, "*"), looked up once per call.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from central.projections.daily import Weighing, day_bounds, reconcile
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
)
from central.store.schema import (
    alarm_steps,
    alarms,
    books,
    cabinets,
    events,
    ledger,
    measurements,
    pending,
    policy_names,
    quarantine,
    sessions,
)

MAX_LIMIT = 10_000


class Names:
    """person/container id -> (name, detail), for one device or any ("*")."""

    def __init__(self, conn: Connection, kind: str) -> None:
        self._names: dict[tuple[str, str], tuple[str, str | None]] = {}
        rows = conn.execute(
            select(
                policy_names.c.device, policy_names.c.id, policy_names.c.name, policy_names.c.detail
            ).where(policy_names.c.kind == kind)
        )
        for device, ident, name, detail in rows:
            self._names[(device, ident)] = (name, detail)

    def get(self, device: str, ident: str) -> tuple[str, str | None] | None:
        return self._names.get((device, ident)) or self._names.get(("*", ident))

    def name(self, device: str, ident: str) -> str | None:
        found = self.get(device, ident)
        return found[0] if found else None


def missing_ranges(
    conn: Connection,
    device: str,
    projected: int,
    top: int,
    status_last: int | None,
    limit: int = 100,
) -> tuple[tuple[int, int], ...]:
    """Seq ranges after the projected head that are not stored (up to `limit` of them)."""
    out: list[tuple[int, int]] = []
    if top > projected:
        seq = events.c.seq
        before = func.lag(seq).over(order_by=seq).label("before")
        inner = (
            select(seq.label("seq"), before)
            .where(and_(events.c.device == device, seq > projected))
            .subquery()
        )
        rows = conn.execute(
            select(inner.c.seq, inner.c.before)
            .where(func.coalesce(inner.c.before, projected) < inner.c.seq - 1)
            .order_by(inner.c.seq)
            .limit(limit)
        )
        for after, prior in rows:
            out.append(((prior if prior is not None else projected) + 1, int(after) - 1))
    if status_last is not None and status_last > max(top, projected) and len(out) < limit:
        out.append((max(top, projected) + 1, status_last))
    return tuple(out)


def cabinets_(conn: Connection) -> list[Cabinet]:
    open_counts: dict[str, int] = {
        str(device): int(count)
        for device, count in conn.execute(
            select(alarms.c.device, func.count())
            .where(alarms.c.cleared_ms.is_(None))
            .group_by(alarms.c.device)
        )
    }
    out = []
    for r in conn.execute(select(cabinets).order_by(cabinets.c.device)):
        out.append(
            Cabinet(
                device=r.device,
                site=r.site,
                online=bool(r.online),
                boot=r.boot if r.boot is not None else r.status_boot,
                last_seq=int(r.projected_seq),
                last_seen_ms=r.last_seen_ms,
                open_alarms=int(open_counts.get(r.device, 0)),
                last_heartbeat_ms=r.last_heartbeat_ms,
                outbox_unsent=r.outbox_unsent,
                missing=missing_ranges(
                    conn, r.device, int(r.projected_seq), int(r.top_seq), r.status_last_seq
                ),
            )
        )
    return out


def alarms_(conn: Connection, state: str = "open", device: str | None = None) -> list[Alarm]:
    if state not in ("open", "all"):
        raise ValueError("state is 'open' or 'all'")
    query = select(alarms).order_by(alarms.c.raised_ms.desc(), alarms.c.device, alarms.c.alarm)
    if state == "open":
        query = query.where(alarms.c.cleared_ms.is_(None))
    if device is not None:
        query = query.where(alarms.c.device == device)
    return [
        Alarm(
            r.device,
            r.alarm,
            r.kind,
            r.raised_ms,
            r.acked_by,
            r.ack_comment,
            r.cleared_ms,
            r.clear_reason,
            json.loads(r.details),
        )
        for r in conn.execute(query)
    ]


def alarm_history(conn: Connection, device: str, alarm: str) -> list[AlarmStep]:
    rows = conn.execute(
        select(alarm_steps)
        .where(and_(alarm_steps.c.device == device, alarm_steps.c.alarm == alarm))
        .order_by(alarm_steps.c.seq)
    )
    return [AlarmStep(r.ts_ms, r.what, r.by, r.comment, r.seq) for r in rows]


def events_(conn: Connection, device: str, from_seq: int = 1, limit: int = 100) -> list[bytes]:
    limit = max(0, min(limit, MAX_LIMIT))
    rows = conn.execute(
        select(events.c.payload)
        .where(and_(events.c.device == device, events.c.seq >= from_seq))
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [bytes(p) for (p,) in rows]


def books_(conn: Connection, device: str | None = None) -> list[Book]:
    names = Names(conn, "container")
    query = select(books).order_by(books.c.device, books.c.slot, books.c.container)
    if device is not None:
        query = query.where(books.c.device == device)
    out = []
    for r in conn.execute(query):
        found = names.get(r.device, r.container)
        out.append(
            Book(
                r.device,
                r.slot,
                r.container,
                r.cas,
                found[0] if found else None,
                found[1] if found else None,
                r.book_mg,
                r.measured_mg,
                r.as_of_seq,
            )
        )
    return out


def sessions_(conn: Connection, device: str, limit: int = 20) -> list[SessionRow]:
    rows = conn.execute(
        select(sessions)
        .where(sessions.c.device == device)
        .order_by(sessions.c.granted_seq.desc())
        .limit(max(0, min(limit, MAX_LIMIT)))
    )
    return [
        SessionRow(r.session, tuple(json.loads(r.persons)), r.granted_ms, r.closed_ms, r.mode)
        for r in rows
    ]


def _ledger_row(r: Any, names: Names) -> LedgerRow:
    return LedgerRow(
        ts_ms=r.ts_ms,
        device=r.device,
        session=r.session,
        kind=r.kind,
        container=r.container,
        cas=r.cas,
        name=names.name(r.device, r.container),
        amount_mg=r.amount_mg,
        book_mg=r.book_mg,
        persons=tuple(json.loads(r.persons)),
        approval=r.approval,
        approver=r.approver,
        purpose=r.purpose,
        seq=r.seq,
    )


def ledger_(
    conn: Connection,
    since_ms: int | None = None,
    until_ms: int | None = None,
    device: str | None = None,
    container: str | None = None,
    person: str | None = None,
) -> list[LedgerRow]:
    query = select(ledger).order_by(ledger.c.ts_ms, ledger.c.device, ledger.c.seq)
    if since_ms is not None:
        query = query.where(ledger.c.ts_ms >= since_ms)
    if until_ms is not None:
        query = query.where(ledger.c.ts_ms < until_ms)
    if device is not None:
        query = query.where(ledger.c.device == device)
    if container is not None:
        query = query.where(ledger.c.container == container)
    names = Names(conn, "container")
    rows = [_ledger_row(r, names) for r in conn.execute(query)]
    if person is not None:  # persons is a JSON list: filter here, exactly, not by LIKE
        rows = [r for r in rows if person in r.persons or r.approver == person]
    return rows


def daily(conn: Connection, day: datetime.date, tz: str) -> list[DailyRow]:
    start, end = day_bounds(day, tz)
    names = Names(conn, "container")
    rows = [_ledger_row(r, names) for r in conn.execute(select(ledger).where(ledger.c.ts_ms < end))]
    weighings = [
        Weighing(r.device, r.container, r.ts_ms, r.seq, r.measured_mg, r.book_mg)
        for r in conn.execute(select(measurements).where(measurements.c.ts_ms < end))
    ]
    keys = {(r.device, r.container) for r in rows} | {(w.device, w.container) for w in weighings}
    return reconcile(day, start, end, rows, weighings, {k: names.name(k[0], k[1]) for k in keys})


def quarantine_(conn: Connection, limit: int = 1000) -> list[Quarantined]:
    rows = conn.execute(
        select(quarantine).order_by(quarantine.c.id.desc()).limit(max(0, min(limit, MAX_LIMIT)))
    )
    return [
        Quarantined(
            r.device,
            r.seq,
            r.received_ms,
            r.reason,
            bytes(r.payload).decode("utf-8", "replace"),
            r.topic,
        )
        for r in rows
    ]


def pending_(conn: Connection, now_ms: int) -> list[Pending]:
    rows = conn.execute(
        select(pending).where(pending.c.expires_at_ms > now_ms).order_by(pending.c.seq)
    )
    return [Pending(r.device, r.person, r.reader, r.expires_at_ms) for r in rows]


def person_name(conn: Connection, device: str, person: str) -> str | None:
    row = conn.execute(
        select(policy_names.c.device, policy_names.c.name).where(
            and_(
                policy_names.c.kind == "person",
                policy_names.c.id == person,
                or_(policy_names.c.device == device, policy_names.c.device == "*"),
            )
        )
    ).all()
    exact = [name for d, name in row if d == device]
    return exact[0] if exact else (row[0].name if row else None)


def persons(conn: Connection, device: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(id, name, roles) of every person the policies name for `device`, by name; a
    person given for the device itself wins over one given for any cabinet ("*")."""
    rows = conn.execute(
        select(
            policy_names.c.device, policy_names.c.id, policy_names.c.name, policy_names.c.detail
        ).where(
            and_(
                policy_names.c.kind == "person",
                or_(policy_names.c.device == device, policy_names.c.device == "*"),
            )
        )
    ).all()
    named: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for row in sorted(rows, key=lambda r: r.device == device):
        roles = tuple(row.detail.split(",")) if row.detail else ()
        named[row.id] = (row.id, row.name, roles)
    return sorted(named.values(), key=lambda person: (person[1], person[0]))


def top_seq(conn: Connection, device: str) -> int:
    value = conn.execute(select(func.max(events.c.seq)).where(events.c.device == device)).scalar()
    return int(value or 0)


def command_answer(
    conn: Connection, device: str, nonce: str, types: Sequence[str], after_seq: int
) -> tuple[str, int, dict[str, Any]] | None:
    rows = conn.execute(
        select(events.c.type, events.c.seq, events.c.payload)
        .where(
            and_(
                events.c.device == device,
                events.c.seq > after_seq,
                events.c.type.in_(list(types)),
            )
        )
        .order_by(events.c.seq)
    )
    for kind, seq, payload in rows:
        data = json.loads(payload)["data"]
        if isinstance(data, dict) and data.get("nonce") == nonce:
            return str(kind), int(seq), data
    return None


def record(conn: Connection) -> list[tuple[str, int, bytes]]:
    """Every stored envelope as (device, seq, payload), in device and seq order."""
    rows = conn.execute(
        select(events.c.device, events.c.seq, events.c.payload).order_by(
            events.c.device, events.c.seq
        )
    )
    return [(str(d), int(s), bytes(p)) for d, s, p in rows]
