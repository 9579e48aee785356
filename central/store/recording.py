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

from sqlalchemy import Connection, and_, bindparam, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from agent.wire import GENESIS_PREV
from central.projections.advance import advance
from central.projections.apply import Head
from central.store.engine import execute_fixed_many, insert_ignore, insert_many, is_postgres
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


def _lock_devices(conn: Connection, devices: list[str]) -> dict[str, Any]:
    """Make sure every device has its row, lock them (in device order), return them."""
    dialect = postgresql if is_postgres(conn) else sqlite
    conn.execute(
        dialect.insert(cabinets).on_conflict_do_nothing(),
        [
            {
                "device": d,
                "site": "",
                "online": False,
                "projected_seq": 0,
                "top_seq": 0,
                "resend_asks": 0,
            }
            for d in devices
        ],
    )
    rows = conn.execute(
        select(cabinets)
        .where(cabinets.c.device.in_(devices))
        .order_by(cabinets.c.device)
        .with_for_update()
    ).all()
    return {row.device: row for row in rows}


def _neighbours(
    conn: Connection, wanted: dict[str, set[int]], heads: dict[str, Any]
) -> dict[tuple[str, int], tuple[str, str]]:
    """(device, seq) -> (hash, prev) of the stored envelopes around the batch's seqs.

    The live case needs no query: a cabinet's next envelopes, all above its stored top,
    whose top is projected, can only link to that top, whose hash the cabinet row holds.
    """
    found: dict[tuple[str, int], tuple[str, str]] = {}
    ranges = []
    for device, seqs in sorted(wanted.items()):
        row = heads[device]
        top, projected = int(row.top_seq), int(row.projected_seq)
        if min(seqs) > top and top == projected:
            if top > 0:
                found[(device, top)] = (row.projected_hash, "")  # its prev is never asked
            continue
        ranges.append(
            and_(events.c.device == device, events.c.seq.between(min(seqs) - 1, max(seqs) + 1))
        )
    for chunk in range(0, len(ranges), 100):
        rows = conn.execute(
            select(events.c.device, events.c.seq, events.c.hash, events.c.prev).where(
                or_(*ranges[chunk : chunk + 100])
            )
        )
        for device, seq, digest, prev in rows:
            found[(device, int(seq))] = (digest, prev)
    return found


def _judge_link(item: Verified, known: dict[tuple[str, int], tuple[str, str]]) -> str | None:
    """None (store it), DUPLICATE, or the reason to quarantine it."""
    env = item.env
    device, seq = str(env["device"]), int(env["seq"])
    here = known.get((device, seq))
    if here is not None:
        if here[0] == item.hash:
            return DUPLICATE
        return f"fork: seq {seq} is already stored with different content (both signed)"
    if seq == 1 and env["prev"] != GENESIS_PREV:
        return "chain broken: seq 1 does not start a chain"
    before = known.get((device, seq - 1))
    if before is not None and env["prev"] != before[0]:
        return f"chain broken: prev does not match the stored seq {seq - 1}"
    after = known.get((device, seq + 1))
    if after is not None and after[1] != item.hash:
        return f"chain broken: the stored seq {seq + 1} does not link to this one"
    return None


def _row(item: Verified) -> dict[str, Any]:
    env = item.env
    return {
        "device": env["device"],
        "seq": env["seq"],
        "boot": env["boot"],
        "ts": env["ts"],
        "type": env["type"],
        "sev": env["sev"],
        "hash": item.hash,
        "prev": env["prev"],
        "received_ms": item.received_ms,
        "payload": item.payload,
    }


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
    """Store a batch in the caller's transaction; outcomes in the order of `verified`.

    Set-based: a handful of statements per batch (lock the cabinets, read the stored
    neighbours, insert the new envelopes, update the cabinets) plus the projections' own
    writes; a city's stream is hundreds of cabinets with one or two envelopes each.
    """
    devices = sorted({str(v.env["device"]) for v in verified} | {p.device for p in presence})
    heads = _lock_devices(conn, devices) if devices else {}
    wanted: dict[str, set[int]] = {}
    for item in verified:
        wanted.setdefault(str(item.env["device"]), set()).add(int(item.env["seq"]))
    known = _neighbours(conn, wanted, heads)
    outcomes: dict[int, str] = {}
    fresh: dict[str, dict[int, tuple[dict[str, Any], str]]] = {}
    seen: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    bad = list(rejected)
    # In (device, seq) order: a link to a neighbour in the same batch is checked too.
    for index in sorted(range(len(verified)), key=lambda i: _key(verified[i])):
        item = verified[index]
        device, seq = _key(item)
        verdict = _judge_link(item, known)
        if verdict == DUPLICATE:
            outcomes[index] = DUPLICATE
            continue
        if verdict is not None:
            bad.append(Rejected(verdict, item.payload, item.topic, item.received_ms, device, seq))
            outcomes[index] = QUARANTINED
            continue
        known[(device, seq)] = (item.hash, str(item.env["prev"]))
        fresh.setdefault(device, {})[seq] = (item.env, item.hash)
        seen[device] = max(seen.get(device, 0), item.received_ms)
        outcomes[index] = STORED
        rows.append(_row(item))
    insert_many(conn, events, rows)
    for status in presence:
        _presence(conn, status)
    for failed in bad:
        quarantine_row(conn, failed)
    changes = [_advance(conn, heads[device], new, seen[device]) for device, new in fresh.items()]
    execute_fixed_many(conn, _ADVANCE_CABINET, changes)
    if changes or bad or presence:
        bump_change_mark(conn)
    return [outcomes[i] for i in range(len(verified))]


_ADVANCE_CABINET = (
    update(cabinets)
    .where(cabinets.c.device == bindparam("d"))
    .values(
        top_seq=bindparam("top"),
        last_seen_ms=bindparam("seen"),
        projected_seq=bindparam("projected"),
        projected_hash=bindparam("hash"),
        boot=bindparam("boot"),
        last_heartbeat_ms=bindparam("beat"),
        outbox_unsent=bindparam("unsent"),
    )
)


def _key(item: Verified) -> tuple[str, int]:
    return str(item.env["device"]), int(item.env["seq"])


def _advance(
    conn: Connection, row: Any, new: dict[int, tuple[dict[str, Any], str]], seen_ms: int
) -> dict[str, Any]:
    head = Head(
        row.device,
        int(row.projected_seq),
        row.projected_hash or GENESIS_PREV,
        row.boot,
        row.last_heartbeat_ms,
        row.outbox_unsent,
    )
    advance(conn, head, new, stored_beyond=int(row.top_seq) > head.seq)
    return {
        "d": row.device,
        "top": max(int(row.top_seq), max(new)),
        "seen": max(row.last_seen_ms or 0, seen_ms),
        "projected": head.seq,
        "hash": head.hash,
        "boot": head.boot,
        "beat": head.last_heartbeat_ms,
        "unsent": head.outbox_unsent,
    }


def _greatest(column: Any, value: int) -> Any:
    return case((column.is_(None), value), (column < value, value), else_=column)


def bump_change_mark(conn: Connection) -> None:
    conn.execute(update(meta).where(meta.c.key == "change_mark").values(value=meta.c.value + 1))
