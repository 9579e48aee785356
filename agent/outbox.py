"""The durable outbox: every event is signed, chained and committed here before anything
else happens, and stays until the broker has acknowledged it (docs/protocol.md).

SQLite in WAL mode on the state dir, two connections to one file:

- the core's, for appends, at synchronous=FULL: a committed event survives power loss;
- the uplink's, for reads and marks, at synchronous=NORMAL: a mark lost in a crash only
  causes a duplicate publish, which consumers absorb by (device, seq).

A WAL reader never waits for a writer, so the uplink keeps reading while the core waits
for its fsync. The two writers (appends, marks) take turns on a Python lock rather than
on SQLite's busy handler, which sleeps in steps of milliseconds.

Group commit: `append_batch` signs and commits several events in one transaction, one
fsync. The core calls it once per batch of inputs and applies outputs only after it
returns (write-ahead). Signing happens before the write lock is taken, so the uplink's
marks are not held up by it.

WAL checkpoints run on a thread of their own (agent.wal_checkpoint), requested every
CHECKPOINT_PAGES pages written, estimated.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from agent.seal import Draft, Sealer, chain_hash
from agent.wal_checkpoint import Checkpointer
from agent.wire import GENESIS_PREV, Envelope, SigningKey

__all__ = ["Draft", "Outbox", "OutboxError", "OutboxStats", "Stored"]

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
INSERT = "INSERT INTO events (seq, type, sev, ts, payload) VALUES (?, ?, ?, ?, ?)"

# Only periodic telemetry may be shed when the disk cap is reached (docs/protocol.md).
SHEDDABLE_TYPE = "env.reading"
# Shed or prune down to this fraction of the cap, so the cap is not hit on every append.
LOW_WATER = 0.9
# WAL pages written, estimated per commit (table leaf, index leaf, meta) and per row;
# a checkpoint is due every CHECKPOINT_PAGES, SQLite's own default.
PAGES_PER_COMMIT, ROWS_PER_PAGE = 3, 8
CHECKPOINT_PAGES: Final = 1000
# After a burst the log is cut back to this when it rewinds (SQLite keeps it otherwise).
WAL_SIZE_LIMIT: Final = 4 * 1024 * 1024


class OutboxError(RuntimeError):
    pass


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
        self._append_lock = threading.Lock()  # one appender at a time (the core)
        self._write_lock = threading.Lock()  # one SQLite writer at a time: appends, marks
        self._read_lock = threading.Lock()  # the uplink-side connection
        self._db = self._connect("FULL")  # the core's
        self._db.executescript(SCHEMA)
        self._db.execute("BEGIN IMMEDIATE")
        try:
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
            # Every open is a new boot (the envelope's `boot`), persisted before any event.
            self.boot = int(meta.get("boot", 0)) + 1
            self._last_seq = int(meta.get("last_seq", 0))
            self._last_hash = str(meta.get("last_hash", GENESIS_PREV))
            self._bytes = int(meta.get("bytes", 0))
            # The rules' state as committed with the last batch (agent.core): the
            # cabinet resumes from it. Empty before the first commit of the first boot.
            self._state: dict[str, bytes] = {
                k.removeprefix("state."): bytes(v)
                for k, v in meta.items()
                if k.startswith("state.")
            }
            self.resumed_from_seq = self._last_seq
            self._put_meta(device=device, pubkey=pub, boot=self.boot)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._db.close()
            raise
        self._side = self._connect("NORMAL")  # the uplink's and the status loop's
        self._sealer = Sealer(device, self.boot, key)
        self._wal_pages = 0  # estimated pages in the log since the last checkpoint
        self._checkpointer = Checkpointer(path, self._write_lock)
        self.over_cap = False

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        return db

    # --- writing (core thread) ---------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def append(self, draft: Draft) -> Envelope:
        return self.append_batch([draft])[0]

    def append_batch(
        self, drafts: Sequence[Draft], *, state: Mapping[str, bytes] | None = None
    ) -> list[Envelope]:
        """Sign, chain and commit all drafts in one transaction; return them in order.

        `state` is the rules' durable state after these events, in named parts (see
        agent.core.StateEncoder): written in the same transaction, each part only when
        it differs from the one stored.
        Returns only after the commit is durable. If it raises, nothing of the batch
        was committed and seq, prev and the byte count are unchanged.
        """
        if not drafts:
            return []
        with self._append_lock:
            seq, prev, size = self._last_seq, self._last_hash, self._bytes
            out: list[Envelope] = []
            for draft in drafts:
                seq += 1
                env = self._sealer.seal(draft, seq, prev)
                prev, size = chain_hash(env.payload), size + len(env.payload)
                out.append(env)
            rows = [
                (e.seq, d.type, d.sev, d.ts, e.payload) for e, d in zip(out, drafts, strict=True)
            ]
            with self._write_lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(INSERT, rows)
                    if size > self.max_bytes:
                        seq, prev, size, extra = self._make_room(seq, prev, size, drafts[-1])
                        out.extend(extra)
                    self._put_meta(last_seq=seq, last_hash=prev, bytes=size)
                    changed = {k: v for k, v in (state or {}).items() if self._state.get(k) != v}
                    if changed:
                        self._put_meta(**{f"state.{k}": v for k, v in changed.items()})
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            self._last_seq, self._last_hash, self._bytes = seq, prev, size
            self._state.update(changed)
            self._wrote(len(rows))
            return out

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
                env = self._sealer.seal(note, seq, prev)
                self._db.execute(INSERT, (seq, note.type, note.sev, note.ts, env.payload))
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

    @property
    def saved_state(self) -> dict[str, bytes]:
        """The durable state's parts as committed with the last batch (a copy)."""
        return dict(self._state)

    # --- reading and marking (uplink thread) -------------------------------------------

    def unsent(self, limit: int = 500, after_seq: int = 0) -> list[Stored]:
        """Unsent events in seq order, starting after `after_seq`."""
        with self._read_lock:
            rows = self._side.execute(
                "SELECT seq, type, sev, ts, payload FROM events "
                "WHERE sent = 0 AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [Stored(*row) for row in rows]

    def mark_sent(self, seqs: Iterable[int]) -> int:
        """Mark acknowledged events sent; returns how many rows changed."""
        runs = _runs(seqs)  # PUBACKs come in order: a few ranges, not one UPDATE per seq
        if not runs:
            return 0
        with self._write_lock, self._read_lock:
            self._side.execute("BEGIN IMMEDIATE")
            try:
                before = self._side.total_changes
                self._side.executemany(
                    "UPDATE events SET sent = 1 WHERE seq BETWEEN ? AND ? AND sent = 0", runs
                )
                changed = self._side.total_changes - before
                self._side.execute("COMMIT")
            except BaseException:
                self._side.execute("ROLLBACK")
                raise
        self._wrote(changed)
        return changed

    def range(self, from_seq: int, to_seq: int) -> list[Stored]:
        """Events still held in [from_seq, to_seq] (sent or not), for `resend`."""
        with self._read_lock:
            rows = self._side.execute(
                "SELECT seq, type, sev, ts, payload FROM events "
                "WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (from_seq, to_seq),
            ).fetchall()
        return [Stored(*row) for row in rows]

    def stats(self) -> OutboxStats:
        with self._read_lock:
            (count,) = self._side.execute("SELECT count(*) FROM events WHERE sent = 0").fetchone()
            # The oldest unsent is the lowest unsent seq (emission order): one index probe,
            # where min(ts) would read every unsent row, payloads and all, each second.
            oldest = self._side.execute(
                "SELECT ts FROM events WHERE sent = 0 ORDER BY seq LIMIT 1"
            ).fetchone()
        return OutboxStats(
            self._last_seq,
            count,
            None if oldest is None else oldest[0],
            self._bytes,
            self.max_bytes,
            self.over_cap,
        )

    def close(self) -> None:
        self._checkpointer.close()
        with self._append_lock, self._write_lock, self._read_lock:
            self._side.close()
            self._db.close()

    # --- internals -----------------------------------------------------------------------

    def _wrote(self, rows: int) -> None:
        # Called from both writers without a lock: a lost update only shifts an estimate.
        self._wal_pages += PAGES_PER_COMMIT + rows // ROWS_PER_PAGE
        if self._wal_pages >= CHECKPOINT_PAGES:
            self._wal_pages = 0
            self._checkpointer.request()

    def _put_meta(self, **values: object) -> None:
        self._db.executemany(
            "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            list(values.items()),
        )


def _runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted distinct seqs as inclusive (first, last) ranges of consecutive values."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs
