"""The stocktakes (双人记账) of a time range, from the centre's stored record.

The store's projections keep weighings per container but not the stocktake as a record
(who attested, which slots, all ok or not), which the daily report lists; this reads the
verified `inventory.stocktake` envelopes themselves. A query of its own rather than a
change to the store's projections (kept by `cabinet-central`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select

from central.store import Store
from central.store.schema import events

STOCKTAKE = "inventory.stocktake"


@dataclass(frozen=True)
class Stocktake:
    device: str
    seq: int
    ts_ms: int
    persons: tuple[str, ...]
    slots: int
    off: tuple[str, ...]  # containers (or slots) out of tolerance
    all_ok: bool


def stocktakes(store: Store, since_ms: int, until_ms: int) -> list[Stocktake]:
    query = (
        select(events.c.device, events.c.seq, events.c.ts, events.c.payload)
        .where(and_(events.c.type == STOCKTAKE, events.c.ts >= since_ms, events.c.ts < until_ms))
        .order_by(events.c.ts, events.c.device, events.c.seq)
    )
    with store.connection() as conn:
        rows = conn.execute(query).all()
    return [_read(str(d), int(s), int(ts), bytes(p)) for d, s, ts, p in rows]


def _read(device: str, seq: int, ts_ms: int, payload: bytes) -> Stocktake:
    # Stored bytes were verified before they were stored; only their shape is read here.
    data: Any = json.loads(payload).get("data") or {}
    slots = [s for s in data.get("slots") or [] if isinstance(s, dict)]
    off = tuple(
        str(s.get("container") or f"slot {s.get('slot')}") for s in slots if s.get("ok") is False
    )
    persons = tuple(str(p) for p in data.get("persons") or [])
    return Stocktake(device, seq, ts_ms, persons, len(slots), off, data.get("all_ok") is True)
