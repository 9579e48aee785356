"""Command nonces already used, kept on disk until the command they came with expires.

A replayed command must be refused even after a restart or a power cut (docs/protocol.md,
"Commands"), so a nonce is committed with synchronous=FULL before the command reaches the core.
Commands are rare (a few a day), so the fsync per command costs nothing that matters.
Only commands that passed every other check are remembered: an attacker without the
central key cannot fill this table.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import structlog

log = structlog.get_logger("nonces")

SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (
    nonce      TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL     -- ms since the epoch; kept until then
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces(expires_at);
"""


class NonceStore:
    """A persistent set of nonces with an expiry each; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def seen(self, nonce: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM nonces WHERE nonce = ?", (nonce,)).fetchone()
        return row is not None

    def remember(self, nonce: str, expires_at_ms: int) -> bool:
        """Record a nonce; False if it was already there (check-and-set in one statement)."""
        with self._lock:
            before = self._db.total_changes
            self._db.execute(
                "INSERT OR IGNORE INTO nonces (nonce, expires_at) VALUES (?, ?)",
                (nonce, expires_at_ms),
            )
            return self._db.total_changes > before

    def purge(self, now_ms: int) -> int:
        """Forget nonces whose command has expired: such a command is refused as expired."""
        with self._lock:
            before = self._db.total_changes
            self._db.execute("DELETE FROM nonces WHERE expires_at < ?", (now_ms,))
            removed = self._db.total_changes - before
        if removed:
            log.debug("nonces.purged", count=removed)
        return removed

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM nonces").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()
