"""Fold one verified envelope into the projections (the vocabulary of docs/protocol.md).

Called only in seq order per device (see advance.py), inside the transaction that
stored or re-reads the envelope. Each handler reads nothing but the envelope and rows
written by earlier seqs of the same device, so replaying the record from scratch gives
the same tables. Types without a handler change only the cabinet's head; a field that
is missing or of the wrong type is treated as absent (the signature says the device
wrote it; the projection must not crash on a device's older vocabulary).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, select, update

from central.store.engine import execute_fixed, insert_ignore, upsert
from central.store.schema import (
    alarm_steps,
    alarms,
    approvals,
    books,
    ledger,
    measurements,
    pending,
    sessions,
)

Envelope = Mapping[str, Any]


@dataclass
class Head:
    """A cabinet's projection cursor and the cabinet fields folded from its events,
    written back once per batch (not once per heartbeat)."""

    device: str
    seq: int  # every envelope up to here is projected
    hash: str  # chain hash of envelope `seq` (GENESIS_PREV for 0)
    boot: int | None = None
    last_heartbeat_ms: int | None = None
    outbox_unsent: int | None = None


Handler = Callable[[Connection, Envelope, Head], None]

# The per-envelope UPDATE/DELETE statements, built once: building and hashing a fresh
# expression per envelope cost ~0.2 ms each, more than SQLite takes to run it.
_ACKNOWLEDGE = (
    update(alarms)
    .where(and_(alarms.c.device == bindparam("d"), alarms.c.alarm == bindparam("a")))
    .values(acked_by=bindparam("by"), ack_comment=bindparam("comment"), acked_ms=bindparam("ts"))
)
_CLEAR = (
    update(alarms)
    .where(and_(alarms.c.device == bindparam("d"), alarms.c.alarm == bindparam("a")))
    .values(cleared_ms=bindparam("ts"), clear_reason=bindparam("why"))
)
_CLOSE_SESSION = (
    update(sessions)
    .where(
        and_(
            sessions.c.device == bindparam("d"),
            sessions.c.session == bindparam("s"),
            sessions.c.closed_ms.is_(None),
        )
    )
    .values(closed_ms=bindparam("ts"))
)
_FORGET_PENDING = delete(pending).where(
    and_(pending.c.device == bindparam("d"), pending.c.person == bindparam("p"))
)
_DROP_BOOK = delete(books).where(
    and_(books.c.device == bindparam("d"), books.c.container == bindparam("c"))
)


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if type(value) is int else None


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _persons(data: Mapping[str, Any]) -> list[str]:
    value = data.get("persons")
    return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []


def project(conn: Connection, env: Envelope, head: Head) -> None:
    head.boot = env["boot"]
    handler = HANDLERS.get(str(env["type"]))
    if handler is not None:
        handler(conn, env, head)


# --- cabinets -------------------------------------------------------------------------


def _heartbeat(conn: Connection, env: Envelope, head: Head) -> None:
    head.last_heartbeat_ms = env["ts"]
    head.outbox_unsent = _int(env["data"], "outbox_unsent")


# --- alarms ---------------------------------------------------------------------------


def _step(conn: Connection, env: Envelope, what: str, by: str | None, comment: str | None) -> None:
    insert_ignore(
        conn,
        alarm_steps,
        {
            "device": env["device"],
            "seq": env["seq"],
            "alarm": str(env["data"].get("alarm")),
            "ts_ms": env["ts"],
            "what": what,
            "by": by,
            "comment": comment,
        },
    )


def _alarm_raised(conn: Connection, env: Envelope, head: Head) -> None:
    data = env["data"]
    alarm = _text(data, "alarm")
    if alarm is None:
        return
    details = {k: v for k, v in data.items() if k not in ("alarm", "kind")}
    insert_ignore(
        conn,
        alarms,
        {
            "device": env["device"],
            "alarm": alarm,
            "kind": _text(data, "kind") or "unknown",
            "raised_ms": env["ts"],
            "raised_seq": env["seq"],
            "details": json.dumps(details, ensure_ascii=False, sort_keys=True),
        },
    )
    _step(conn, env, "raised", None, None)


def _alarm_acknowledged(conn: Connection, env: Envelope, head: Head) -> None:
    data = env["data"]
    alarm, by, comment = _text(data, "alarm"), _text(data, "by"), _text(data, "comment")
    if alarm is None:
        return
    execute_fixed(
        conn,
        _ACKNOWLEDGE,
        {"d": env["device"], "a": alarm, "by": by, "comment": comment, "ts": env["ts"]},
    )
    _step(conn, env, "acknowledged", by, comment)


def _alarm_cleared(conn: Connection, env: Envelope, head: Head) -> None:
    data = env["data"]
    alarm, reason = _text(data, "alarm"), _text(data, "reason")
    if alarm is None:
        return
    execute_fixed(conn, _CLEAR, {"d": env["device"], "a": alarm, "ts": env["ts"], "why": reason})
    _step(conn, env, "cleared", None, reason)


# --- sessions and first badges --------------------------------------------------------


def _granted(conn: Connection, env: Envelope, head: Head) -> None:
    data = env["data"]
    session = _text(data, "session")
    persons = _persons(data)
    if session is not None:
        insert_ignore(
            conn,
            sessions,
            {
                "device": env["device"],
                "session": session,
                "persons": json.dumps(persons, ensure_ascii=False),
                "granted_ms": env["ts"],
                "granted_seq": env["seq"],
                "mode": _text(data, "mode") or "local",
            },
        )
    _forget_pending(conn, env, persons)


def _session_closed(conn: Connection, env: Envelope, head: Head) -> None:
    # The first of door.closed (the session's door shut) and access.closed (tap-out)
    # closes it; a later one does not move the time.
    session = _text(env["data"], "session")
    if session is None:
        return
    execute_fixed(conn, _CLOSE_SESSION, {"d": env["device"], "s": session, "ts": env["ts"]})


def _pending(conn: Connection, env: Envelope, head: Head) -> None:
    data = env["data"]
    person, expires = _text(data, "person"), _int(data, "expires_at_ms")
    if person is None or expires is None:
        return
    upsert(
        conn,
        pending,
        {
            "device": env["device"],
            "person": person,
            "reader": _text(data, "reader"),
            "expires_at_ms": expires,
            "seq": env["seq"],
        },
        ["device", "person"],
    )


def _forget_pending(conn: Connection, env: Envelope, persons: list[str]) -> None:
    for person in dict.fromkeys(persons):  # one fixed statement per person (one or two)
        execute_fixed(conn, _FORGET_PENDING, {"d": env["device"], "p": person})


def _expired(conn: Connection, env: Envelope, head: Head) -> None:
    person = _text(env["data"], "person")
    _forget_pending(conn, env, [person] if person else [])


# --- books, ledger, weighings ---------------------------------------------------------


def _book(conn: Connection, env: Envelope, container: str, **values: Any) -> None:
    values = {k: v for k, v in values.items() if v is not None}
    upsert(
        conn,
        books,
        {"device": env["device"], "container": container, "as_of_seq": env["seq"], **values},
        ["device", "container"],
    )


def _approval_of(conn: Connection, env: Envelope) -> tuple[str | None, str | None, str | None]:
    raw = env["data"].get("approval")
    nonce = _text(raw, "nonce") if isinstance(raw, Mapping) else None
    if nonce is None:
        return None, None, None
    row = conn.execute(
        select(approvals.c.by, approvals.c.purpose).where(
            and_(approvals.c.device == env["device"], approvals.c.nonce == nonce)
        )
    ).first()
    return nonce, (row.by if row else None), (row.purpose if row else None)


def _ledger(conn: Connection, env: Envelope, kind: str, amount: int | None) -> None:
    data = env["data"]
    container = _text(data, "container")
    if container is None or amount is None:
        return
    nonce, approver, approved_purpose = _approval_of(conn, env)
    book = _int(data, "book_after_mg") if kind == "adjusted" else _int(data, "book_mg")
    if kind == "disposed":
        book = 0  # the row's amount is the content that left; nothing is left on the books
    insert_ignore(
        conn,
        ledger,
        {
            "device": env["device"],
            "seq": env["seq"],
            "ts_ms": env["ts"],
            "session": _text(data, "session"),
            "kind": kind,
            "container": container,
            "cas": _text(data, "cas"),
            "amount_mg": amount,
            "book_mg": book,
            "persons": json.dumps(_persons(data), ensure_ascii=False),
            "approval": nonce,
            "approver": approver,
            "purpose": _text(data, "purpose") or approved_purpose,
        },
    )
    _book(conn, env, container, slot=_int(data, "slot"), cas=_text(data, "cas"), book_mg=book)


def _measured(
    conn: Connection, env: Envelope, container: str, measured: int, book: int | None
) -> None:
    insert_ignore(
        conn,
        measurements,
        {
            "device": env["device"],
            "seq": env["seq"],
            "container": container,
            "ts_ms": env["ts"],
            "measured_mg": measured,
            "book_mg": book,
        },
    )
    _book(conn, env, container, measured_mg=measured, book_mg=book)


def _withdrawal(conn: Connection, env: Envelope, head: Head) -> None:
    _ledger(conn, env, "withdrawal", _int(env["data"], "amount_mg"))


def _return(conn: Connection, env: Envelope, head: Head) -> None:
    _ledger(conn, env, "return", _int(env["data"], "amount_mg"))


def _received(conn: Connection, env: Envelope, head: Head) -> None:
    data = env["data"]
    _ledger(conn, env, "received", _int(data, "book_mg"))
    container, measured = _text(data, "container"), _int(data, "measured_mg")
    if container is not None and measured is not None:
        _measured(conn, env, container, measured, _int(data, "book_mg"))


def _disposed(conn: Connection, env: Envelope, head: Head) -> None:
    data = env["data"]
    _ledger(conn, env, "disposed", _int(data, "book_mg"))
    container = _text(data, "container")
    if container is not None:  # gone for good: no longer on the books of this cabinet
        execute_fixed(conn, _DROP_BOOK, {"d": env["device"], "c": container})


def _adjusted(conn: Connection, env: Envelope, head: Head) -> None:
    _ledger(conn, env, "adjusted", _int(env["data"], "delta_mg"))


def _slots(conn: Connection, env: Envelope, measured_key: str) -> None:
    slots = env["data"].get("slots")
    for entry in slots if isinstance(slots, list) else []:
        if not isinstance(entry, Mapping):
            continue
        container, measured = _text(entry, "container"), _int(entry, measured_key)
        if container is None or measured is None:
            continue
        _book(conn, env, container, slot=_int(entry, "slot"))
        _measured(conn, env, container, measured, _int(entry, "book_mg"))


def _snapshot(conn: Connection, env: Envelope, head: Head) -> None:
    _slots(conn, env, "mass_mg")


def _stocktake(conn: Connection, env: Envelope, head: Head) -> None:
    _slots(conn, env, "measured_mg")


def _command_applied(conn: Connection, env: Envelope, head: Head) -> None:
    # Who approved an amount or a disposal is in the command, not in the later withdrawal.
    data = env["data"]
    # the agent records the command's args flat in `data` (`by`, `purpose` beside `name`)
    args = data.get("args") if isinstance(data.get("args"), Mapping) else data
    nonce = _text(data, "nonce")
    if data.get("name") not in ("approve_withdrawal", "approve_disposal"):
        return
    if nonce is None or not isinstance(args, Mapping):
        return
    insert_ignore(
        conn,
        approvals,
        {
            "device": env["device"],
            "nonce": nonce,
            "by": _text(args, "by"),
            "purpose": _text(args, "purpose"),
        },
    )


HANDLERS: dict[str, Handler] = {
    "system.heartbeat": _heartbeat,
    "alarm.raised": _alarm_raised,
    "alarm.acknowledged": _alarm_acknowledged,
    "alarm.cleared": _alarm_cleared,
    "access.pending": _pending,
    "access.granted": _granted,
    "access.expired": _expired,
    "access.closed": _session_closed,
    "door.closed": _session_closed,
    "inventory.withdrawal": _withdrawal,
    "inventory.return": _return,
    "inventory.received": _received,
    "inventory.disposed": _disposed,
    "inventory.adjusted": _adjusted,
    "inventory.snapshot": _snapshot,
    "inventory.stocktake": _stocktake,
    "command.applied": _command_applied,
}
