"""WAL checkpoints of the outbox, on a thread and a connection of their own.

A checkpoint copies SQLite's write-ahead log into the database: megabytes of writes and
two fsyncs. Left to SQLite, it runs inside whichever commit crossed the threshold, and
every few hundred commits a lock decision or an alarm publish would wait for one. The
outbox asks for one instead (`request`), and this thread runs it.

They must also catch up completely now and then, or SQLite never rewinds the log and it
grows for ever, each commit appending to an ever longer file (measured: 19 MB after
1,500 commits, and slower fsyncs): so each checkpoint ends with a short pass under the
outbox's write lock.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import structlog

log = structlog.get_logger("outbox")


class Checkpointer:
    """Runs PASSIVE checkpoints (they neither wait for nor block the writers) on a thread
    of its own, started on first need: most outboxes in tests never need one."""

    def __init__(self, path: Path, write_lock: threading.Lock) -> None:
        self._path = path
        self._write_lock = write_lock
        self._wake = threading.Event()
        self._closing = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.done = 0

    def request(self) -> None:
        with self._lock:
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(
                    target=self._run, name="outbox-checkpoint", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(10)

    def _run(self) -> None:
        db = sqlite3.connect(str(self._path), isolation_level=None, timeout=30)
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closing:
                    return
                try:
                    self._catch_up(db)
                except sqlite3.Error as exc:  # the log grows meanwhile; the next one retries
                    log.warning("outbox.checkpoint_failed", error=str(exc))
        finally:
            db.close()

    def _catch_up(self, db: sqlite3.Connection) -> None:
        # SQLite rewinds the log to its start (and then overwrites it in place, which
        # syncs faster than appending) only when a write *begins* with every frame
        # copied, and a busy core begins its next one within microseconds of a
        # commit. So the bulk is copied while the writers go on, and what they added
        # meanwhile in a short pass holding the write lock; the next append rewinds.
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        with self._write_lock:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.done += 1
