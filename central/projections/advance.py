"""Move one device's projections forward over the gap-free part of its stored record.

The record may hold envelopes beyond a gap (out-of-order arrival, a lost message); they
are stored and link-checked as soon as they arrive, but projected only once every seq
before them is there, so the projections are a pure function of the stored record. A
gap the device itself attests (a signed `system.outbox_dropped` naming the range: shed
telemetry) is stepped over. Otherwise the projection waits for `resend` to fill it.

The common case (a cabinet's next envelopes, in order, all in the batch being stored)
is projected from the envelopes in hand; anything else re-reads the stored record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, and_, select

from agent.wire import parse_envelope
from central.projections.apply import Head, project
from central.store.schema import events

BATCH = 500


def advance(
    conn: Connection,
    head: Head,
    fresh: Mapping[int, tuple[Mapping[str, Any], str]] | None = None,
    stored_beyond: bool = True,
) -> int:
    """Project what follows `head` (updated in place); return how many were projected.

    `fresh`: seq -> (envelope, hash) just stored in this transaction; `stored_beyond`:
    whether the store may hold other unprojected envelopes of this device.
    """
    fresh = fresh or {}
    done = 0
    if not stored_beyond:
        while head.seq + 1 in fresh:
            env, digest = fresh[head.seq + 1]
            project(conn, env, head)
            head.seq, head.hash, done = head.seq + 1, digest, done + 1
        if not any(seq > head.seq for seq in fresh):
            return done
    return done + _from_store(conn, head)


def _from_store(conn: Connection, head: Head) -> int:
    done = 0
    while True:
        rows = conn.execute(
            select(events.c.seq, events.c.prev, events.c.hash, events.c.payload)
            .where(and_(events.c.device == head.device, events.c.seq > head.seq))
            .order_by(events.c.seq)
            .limit(BATCH)
        ).all()
        progressed = False
        for seq, prev, digest, payload in rows:
            if seq != head.seq + 1 and not _attested(conn, head.device, head.seq + 1, seq - 1):
                return done
            if seq == head.seq + 1 and head.seq > 0 and prev != head.hash:
                return done  # cannot happen: storing refuses a broken link (defence in depth)
            project(conn, parse_envelope(payload), head)
            head.seq, head.hash, done, progressed = seq, digest, done + 1, True
        if not progressed or len(rows) < BATCH:
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
