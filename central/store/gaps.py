"""Which missing seqs to ask a cabinet for again (`resend`), shared by every process.

Per device one range is asked for at a time: from the first missing seq after the
projected head to the last missing one (past the last stored envelope: up to the
`last_seq` of the device's status birth), at most `max_range` seqs. Asking is
rate-limited through the device's `cabinets` row, updated with a compare-and-set on
`resend_asked_ms`, so of several `serve` processes exactly one asks:
- a new gap is only noted; it is asked for after `grace_ms` (envelopes of different
  topics overtake each other: out-of-order arrival is normal), or after `retry_ms` for a
  gap past the last stored envelope (after a reconnect the device drains its backlog);
- an unanswered ask is repeated after `retry_ms`, doubling up to 32 x `retry_ms`: the
  cabinet's outbox keeps its events for weeks, so the centre never gives up.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, func, select, update

from central.store.reads import missing_ranges
from central.store.schema import cabinets


@dataclass(frozen=True)
class ResendAsk:
    device: str
    site: str
    lo: int
    hi: int
    attempt: int


def due_resends(
    conn: Connection, now_ms: int, *, grace_ms: int, retry_ms: int, max_range: int
) -> list[ResendAsk]:
    due: list[ResendAsk] = []
    rows = conn.execute(
        select(cabinets).where(
            (cabinets.c.top_seq > cabinets.c.projected_seq)
            | (cabinets.c.status_last_seq > cabinets.c.top_seq)
            | cabinets.c.resend_lo.is_not(None)
        )
    ).all()
    for row in rows:
        gap = missing_ranges(
            conn, row.device, int(row.projected_seq), int(row.top_seq), row.status_last_seq
        )
        old = row.resend_asked_ms
        guard = and_(
            cabinets.c.device == row.device,
            func.coalesce(cabinets.c.resend_asked_ms, -1) == (old if old is not None else -1),
        )
        if not gap:
            if row.resend_lo is not None:
                conn.execute(
                    update(cabinets)
                    .where(guard)
                    .values(resend_lo=None, resend_hi=None, resend_asked_ms=None, resend_asks=0)
                )
            continue
        # One ask from the first missing seq to the last (within max_range): the stored
        # seqs in between come again as duplicates, which costs less than an ask per gap.
        lo = gap[0][0]
        hi = max(h for low, h in gap if low < lo + max_range)
        if row.resend_lo != lo:
            conn.execute(
                update(cabinets)
                .where(guard)
                .values(resend_lo=lo, resend_hi=hi, resend_asked_ms=now_ms, resend_asks=0)
            )
            continue
        tail = lo > int(row.top_seq)
        asked = int(row.resend_asks)
        wait = (retry_ms if tail else grace_ms) if asked == 0 else retry_ms * 2 ** min(asked - 1, 5)
        if old is not None and now_ms - old < wait:
            continue
        done = conn.execute(
            update(cabinets)
            .where(guard)
            .values(resend_hi=hi, resend_asked_ms=now_ms, resend_asks=asked + 1)
        )
        if done.rowcount:
            asks_hi = min(hi, lo + max_range - 1)
            due.append(ResendAsk(row.device, row.site, lo, asks_hi, asked + 1))
    return due
