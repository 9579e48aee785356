"""Move one device's projections forward over the gap-free part of its stored record.

The record may hold envelopes beyond a gap (out-of-order arrival, a lost message); they
are stored and link-checked as soon as they arrive, but projected only once every seq
before them is there, so the projections are a pure function of the stored record. A
gap the device itself attests (a signed `system.outbox_dropped` naming the range: shed
telemetry) is stepped over. Otherwise the projection waits for `resend` to fill it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, select, update

from agent.wire import GENESIS_PREV, parse_envelope
from central.projections.apply import project
from central.store.schema import cabinets, events

BATCH = 500


def advance(conn: Connection, device: str) -> int:
    """Project what follows the device's head; return how many envelopes were projected."""
    row = conn.execute(
        select(cabinets.c.projected_seq, cabinets.c.projected_hash).where(
            cabinets.c.device == device
        )
    ).first()
    if row is None:
        return 0
    head, head_hash = int(row.projected_seq), row.projected_hash or GENESIS_PREV
    done = 0
    while True:
        rows = conn.execute(
            select(events.c.seq, events.c.prev, events.c.hash, events.c.payload)
            .where(and_(events.c.device == device, events.c.seq > head))
            .order_by(events.c.seq)
            .limit(BATCH)
        ).all()
        progressed = False
        for seq, prev, digest, payload in rows:
            if seq != head + 1 and not _attested(conn, device, head + 1, seq - 1):
                break
            if seq == head + 1 and prev != head_hash and head > 0:
                break  # cannot happen: storing refuses a broken link (defence in depth)
            project(conn, parse_envelope(payload))
            head, head_hash, done, progressed = seq, digest, done + 1, True
        if not progressed or len(rows) < BATCH:
            break
    if done:
        conn.execute(
            update(cabinets)
            .where(cabinets.c.device == device)
            .values(projected_seq=head, projected_hash=head_hash)
        )
    return done


def _attested(conn: Connection, device: str, lo: int, hi: int) -> bool:
    """Does a stored, signed system.outbox_dropped of this device say it shed lo..hi?"""
    for (payload,) in conn.execute(
        select(events.c.payload).where(
            and_(
                events.c.device == device,
                events.c.type == "system.outbox_dropped",
                events.c.seq > hi,
            )
        )
    ):
        data: Any = parse_envelope(payload)["data"]
        first, last = data.get("from_seq"), data.get("to_seq")
        if type(first) is int and type(last) is int and first <= lo and hi <= last:
            return True
    return False
