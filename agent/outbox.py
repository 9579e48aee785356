"""The durable outbox: every event is signed, chained and committed here before anything
else happens, and stays until the broker has acknowledged it (DESIGN.md §4.1, §5).

SQLite in WAL mode on the state dir. One connection guarded by a lock, because two
threads use it: the core appends (synchronous=FULL: a committed event survives power
loss) and the uplink marks events sent (synchronous=NORMAL: a mark lost in a crash only
causes a duplicate publish, which consumers absorb by (device, seq)).

Group commit: `append_batch` signs and commits several events in one transaction, one
fsync. The core calls it once per batch of inputs and applies outputs only after it
returns (write-ahead).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from agent.wire import GENESIS_PREV, Envelope, SigningKey, build_envelope

log = structlog.get_logger("outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY,
    type    TEXT    NOT NULL,
    sev     TEXT    NOT NULL,
    ts      INTEGER NOT NULL,
    sent    INTEGER NOT NULL DEFAULT 0,
    payload BLOB    NOT NULL      -- canonical envelope bytes incl. sig: what is published
);
CREATE INDEX IF NOT EXISTS events_unsent ON events(seq) WHERE sent = 0;
CREATE INDEX IF NOT EXISTS events_shed ON events(seq) WHERE sent = 0 AND type = 'env.reading';
"""

# Only periodic telemetry may be shed when the disk cap is reached (DESIGN.md §5).
SHEDDABLE_TYPE = "env.reading"
# Shed or prune down to this fraction of the cap, so the cap is not hit on every append.
LOW_WATER = 0.9


class OutboxError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Draft:
    """An event before it has a seq, a prev and a signature."""

    type: str
    sev: str
    data: Mapping[str, Any]
    ts: int
    mono: int
    clock_ok: bool


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    type: str
    sev: str
    ts: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    last_seq: int
    unsent: int
    oldest_unsent_ts: int | None
    stored_bytes: int
    max_bytes: int
    over_cap: bool


class Outbox:
    def __init__(
        self, path: Path, device: str, key: SigningKey, *, max_bytes: int = 256 * 1024 * 1024
    ) -> None:
        self.path = path
        self.device = device
        self._key = key
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._synchronous = "FULL"
        with self._transaction():
            meta = dict(self._db.execute("SELECT k, v FROM meta").fetchall())
            stored_device = meta.get("device")
            if stored_device is not None and stored_device != device:
                raise OutboxError(
                    f"{path} belongs to device {stored_device!r}, not {device!r}: "
                    "refusing to mix two devices' records"
                )
            stored_pub = meta.get("pubkey")
            pub = key.public.to_text()
            if stored_pub is not None and stored_pub != pub:
                raise OutboxError(f"{path} was signed with another key: the chain would not verify")
            # Every open is a new boot (DESIGN.md §4.1), persisted before any event.
            self.boot = int(meta.get("boot", 0)) + 1
            self._last_seq = int(meta.get("last_seq", 0))
            self._last_hash = str(meta.get("last_hash", GENESIS_PREV))
            self._bytes = int(meta.get("bytes", 0))
            self._put_meta(device=device, pubkey=pub, boot=self.boot)
        self.over_cap = False

    # --- writing (core thread) ---------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def append(self, draft: Draft) -> Envelope:
        return self.append_batch([draft])[0]

    def append_batch(self, drafts: Sequence[Draft]) -> list[Envelope]:
        """Sign, chain and commit all drafts in one transaction; return them in order.

        Returns only after the commit is durable. If it raises, nothing of the batch
        was committed and seq, prev and the byte count are unchanged.
        """
        if not drafts:
            return []
        with self._lock:
            self._set_sync("FULL")
            seq, prev, size = self._last_seq, self._last_hash, self._bytes
            out: list[Envelope] = []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for draft in drafts:
                    seq += 1
                    env = self._insert(draft, seq, prev)
                    prev, size = env.hash, size + len(env.payload)
                    out.append(env)
                if size > self.max_bytes:
                    seq, prev, size, extra = self._make_room(seq, prev, size, drafts[-1])
                    out.extend(extra)
                self._put_meta(last_seq=seq, last_hash=prev, bytes=size)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._last_seq, self._last_hash, self._bytes = seq, prev, size
            return out

    def _insert(self, draft: Draft, seq: int, prev: str) -> Envelope:
        env = build_envelope(
            device=self.device,
            boot=self.boot,
            seq=seq,
            ts=draft.ts,
            mono=draft.mono,
            clock_ok=draft.clock_ok,
            type=draft.type,
            sev=draft.sev,
            data=draft.data,
            prev=prev,
            key=self._key,
        )
        self._db.execute(
            "INSERT INTO events (seq, type, sev, ts, payload) VALUES (?, ?, ?, ?, ?)",
            (seq, draft.type, draft.sev, draft.ts, env.payload),
        )
        return env

    def _make_room(
        self, seq: int, prev: str, size: int, last: Draft
    ) -> tuple[int, str, int, list[Envelope]]:
        """Over the cap: prune sent events, then shed unsent telemetry (never anything else)."""
        target = int(self.max_bytes * LOW_WATER)
        size -= self._delete_oldest("sent = 1", size - target)
        extra: list[Envelope] = []
        if size > self.max_bytes:
            rows = self._db.execute(
                "SELECT seq, length(payload) FROM events WHERE sent = 0 AND type = ? ORDER BY seq",
                (SHEDDABLE_TYPE,),
            ).fetchall()
            shed: list[tuple[int, int]] = []
            freed = 0
            for row_seq, length in rows:
                if size - freed <= target:
                    break
                shed.append((row_seq, length))
                freed += length
            if shed:
                self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s, _ in shed])
                size -= freed
                seq += 1
                note = Draft(
                    "system.outbox_dropped",
                    "warning",
                    {"count": len(shed), "from_seq": shed[0][0], "to_seq": shed[-1][0]},
                    last.ts,
                    last.mono,
                    last.clock_ok,
                )
                env = self._insert(note, seq, prev)
                prev, size = env.hash, size + len(env.payload)
                extra.append(env)
                log.warning("outbox.shed", count=len(shed), from_seq=shed[0][0], to_seq=shed[-1][0])
        # Access, inventory and alarm records are never dropped: past the cap we keep them
        # and say so (heartbeat/stats), rather than lose the audit trail.
        if size > self.max_bytes and not self.over_cap:
            log.error("outbox.over_cap", bytes=size, max_bytes=self.max_bytes)
        self.over_cap = size > self.max_bytes
        return seq, prev, size, extra

    def _delete_oldest(self, where: str, at_least: int) -> int:
        if at_least <= 0:
            return 0
        freed = 0
        doomed: list[int] = []
        for row_seq, length in self._db.execute(
            f"SELECT seq, length(payload) FROM events WHERE {where} ORDER BY seq"
        ):
            if freed >= at_least:
                break
            doomed.append(row_seq)
            freed += length
        self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in doomed])
        return freed

    # --- reading and marking (uplink thread) -------------------------------------------

    def unsent(self, limit: int = 500, after_seq: int = 0) -> list[Stored]:
        """Unsent events in seq order, starting after `after_seq`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, type, sev, ts, payload FROM events "
                "WHERE sent = 0 AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [Stored(*row) for row in rows]

    def mark_sent(self, seqs: Iterable[int]) -> int:
        """Mark acknowledged events sent; returns how many rows changed."""
        batch = [(s,) for s in seqs]
        if not batch:
            return 0
        with self._lock:
            self._set_sync("NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany("UPDATE events SET sent = 1 WHERE seq = ? AND sent = 0", batch)
                changed = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return changed

    def range(self, from_seq: int, to_seq: int) -> list[Stored]:
        """Events still held in [from_seq, to_seq] (sent or not), for `resend`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, type, sev, ts, payload FROM events "
                "WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (from_seq, to_seq),
            ).fetchall()
        return [Stored(*row) for row in rows]

    def stats(self) -> OutboxStats:
        with self._lock:
            count, oldest = self._db.execute(
                "SELECT count(*), min(ts) FROM events WHERE sent = 0"
            ).fetchone()
            return OutboxStats(
                self._last_seq, count, oldest, self._bytes, self.max_bytes, self.over_cap
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- internals -----------------------------------------------------------------------

    def _set_sync(self, level: str) -> None:
        if self._synchronous != level:
            self._db.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level

    def _put_meta(self, **values: object) -> None:
        self._db.executemany(
            "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            list(values.items()),
        )

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
