"""Writing the record: verified envelopes, quarantined input and presence, in one batch.

The ingest verifies signatures against the registry (central.ingest.verifying) and hands
the outcome here; this module adds what needs the stored record:
- idempotence by (device, seq): the same bytes again are a duplicate (at-least-once
  delivery); *different* validly signed bytes for a stored seq are a fork and go to the
  quarantine, the first stored copy stays;
- chain links, checked against whichever neighbour is stored: `prev` must be the hash
  of seq - 1, and seq + 1's `prev` must be this envelope's hash (whichever of the two
  arrives second is the one checked). A broken link is quarantined;
- the projections, advanced over the gap-free part of the record (projections.advance).
Everything of a batch is one transaction: the caller acknowledges the MQTT messages
only after `record_batch` returned, i.e. after the commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, case, select, update

from agent.wire import GENESIS_PREV
from central.projections.advance import advance
from central.store.engine import insert_ignore
from central.store.schema import cabinets, events, meta, quarantine


@dataclass(frozen=True)
class Verified:
    """An envelope whose signature verified with its registered device's key."""

    env: dict[str, Any]
    payload: bytes
    hash: str
    topic: str
    received_ms: int


@dataclass(frozen=True)
class Rejected:
    reason: str
    payload: bytes
    topic: str | None
    received_ms: int
    device: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class Presence:
    """A status message (birth or Last Will): unsigned, so it only says online/offline."""

    device: str
    online: bool
    boot: int | None
    last_seq: int | None
    received_ms: int


STORED, DUPLICATE, QUARANTINED = "stored", "duplicate", "quarantined"


def quarantine_row(conn: Connection, item: Rejected) -> None:
    digest = hashlib.sha256(
        b"\0".join([item.reason.encode(), (item.topic or "").encode(), item.payload])
    ).hexdigest()
    insert_ignore(
        conn,
        quarantine,
        {
            "digest": digest,
            "received_ms": item.received_ms,
            "topic": item.topic,
            "device": item.device,
            "seq": item.seq,
            "reason": item.reason[:1000],
            "payload": item.payload,
        },
    )


def _lock_device(conn: Connection, device: str) -> None:
    insert_ignore(
        conn,
        cabinets,
        {
            "device": device,
            "site": "",
            "online": False,
            "projected_seq": 0,
            "top_seq": 0,
            "resend_asks": 0,
        },
    )
    conn.execute(select(cabinets.c.device).where(cabinets.c.device == device).with_for_update())


def _hash_at(conn: Connection, device: str, seq: int) -> str | None:
    row = conn.execute(
        select(events.c.hash).where(and_(events.c.device == device, events.c.seq == seq))
    ).first()
    return str(row.hash) if row else None


def _prev_at(conn: Connection, device: str, seq: int) -> str | None:
    row = conn.execute(
        select(events.c.prev).where(and_(events.c.device == device, events.c.seq == seq))
    ).first()
    return str(row.prev) if row else None


def _store_one(conn: Connection, item: Verified) -> str:
    env = item.env
    device, seq = str(env["device"]), int(env["seq"])
    known = _hash_at(conn, device, seq)
    problem = None
    if known == item.hash:
        return DUPLICATE
    if known is not None:
        problem = f"fork: seq {seq} is already stored with different content (both signed)"
    elif seq == 1 and env["prev"] != GENESIS_PREV:
        problem = "chain broken: seq 1 does not start a chain"
    elif (before := _hash_at(conn, device, seq - 1)) is not None and env["prev"] != before:
        problem = f"chain broken: prev does not match the stored seq {seq - 1}"
    elif (after := _prev_at(conn, device, seq + 1)) is not None and after != item.hash:
        problem = f"chain broken: the stored seq {seq + 1} does not link to this one"
    if problem is not None:
        quarantine_row(
            conn, Rejected(problem, item.payload, item.topic, item.received_ms, device, seq)
        )
        return QUARANTINED
    conn.execute(
        events.insert().values(
            device=device,
            seq=seq,
            boot=env["boot"],
            ts=env["ts"],
            type=env["type"],
            sev=env["sev"],
            hash=item.hash,
            prev=env["prev"],
            received_ms=item.received_ms,
            payload=item.payload,
        )
    )
    return STORED


def _presence(conn: Connection, item: Presence) -> None:
    row = conn.execute(
        select(cabinets.c.status_boot).where(cabinets.c.device == item.device)
    ).first()
    known_boot = row.status_boot if row else None
    # A retained Last Will of an old boot may arrive after the birth of the next one.
    if item.boot is not None and known_boot is not None and item.boot < known_boot:
        return
    values: dict[str, Any] = {
        "online": item.online,
        "status_ms": item.received_ms,
        "last_seen_ms": _greatest(cabinets.c.last_seen_ms, item.received_ms),
    }
    if item.boot is not None:
        values["status_boot"] = item.boot
    if item.last_seq is not None:
        values["status_last_seq"] = item.last_seq
    conn.execute(update(cabinets).where(cabinets.c.device == item.device).values(**values))


def record_batch(
    conn: Connection,
    verified: Sequence[Verified],
    rejected: Sequence[Rejected] = (),
    presence: Sequence[Presence] = (),
) -> list[str]:
    """Store a batch in the caller's transaction; outcomes in the order of `verified`."""
    outcomes: dict[int, str] = {}
    # Devices in a fixed order: concurrent writers on PostgreSQL lock rows alike, no deadlock.
    order = sorted(
        range(len(verified)), key=lambda i: (verified[i].env["device"], verified[i].env["seq"])
    )
    touched: dict[str, tuple[int, int]] = {}
    for device in sorted({str(v.env["device"]) for v in verified} | {p.device for p in presence}):
        _lock_device(conn, device)
    for index in order:
        item = verified[index]
        outcomes[index] = _store_one(conn, item)
        if outcomes[index] == STORED:
            device = str(item.env["device"])
            top, seen = touched.get(device, (0, 0))
            touched[device] = (max(top, int(item.env["seq"])), max(seen, item.received_ms))
    for status in presence:
        _presence(conn, status)
    for bad in rejected:
        quarantine_row(conn, bad)
    for device, (top, seen) in touched.items():
        conn.execute(
            update(cabinets)
            .where(cabinets.c.device == device)
            .values(
                top_seq=_greatest(cabinets.c.top_seq, top),
                last_seen_ms=_greatest(cabinets.c.last_seen_ms, seen),
            )
        )
        advance(conn, device)
    if touched or rejected or presence:
        bump_change_mark(conn)
    return [outcomes[i] for i in range(len(verified))]


def _greatest(column: Any, value: int) -> Any:
    return case((column.is_(None), value), (column < value, value), else_=column)


def bump_change_mark(conn: Connection) -> None:
    conn.execute(update(meta).where(meta.c.key == "change_mark").values(value=meta.c.value + 1))
