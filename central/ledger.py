"""The centre's own record of what it verified (`watch --store`, `import`), in SQLite.

It is the source of `export` and `report`. Every envelope is kept as its exact
canonical bytes, so the ledger can itself be re-verified (`cabinetctl verify
ledger.db`), and the readers here check each signature again against the registry
before a row is believed: a ledger file is only as trustworthy as the disk it sits on.
Problems (forgeries, gaps, unknown devices) are kept too, for the audit trail.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from agent.wire import VerifyKey, WireError, canonical, envelope_hash, parse_envelope
from agent.wire import verify_envelope as check
from central.errors import CentralError
from central.watch import Seen

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    device      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    sev         TEXT    NOT NULL,
    hash        TEXT    NOT NULL,   -- chain hash of payload, for dedupe across restarts
    received_ms INTEGER NOT NULL,
    note        TEXT,               -- e.g. "late": how it reached us
    payload     BLOB    NOT NULL,   -- canonical envelope bytes incl. sig
    PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_type_ts ON events(type, ts);
CREATE TABLE IF NOT EXISTS problems (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic       TEXT,
    device      TEXT,
    seq         INTEGER,
    problem     TEXT    NOT NULL,
    payload     BLOB
);
"""


class Ledger:
    def __init__(self, path: Path, *, create: bool = True) -> None:
        if not create and not path.exists():
            raise CentralError(f"ledger {path} not found (made by `watch --store` or `import`)")
        self.path = path
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            self._db.execute("BEGIN")
        except sqlite3.Error as exc:
            raise CentralError(f"{path}: not a usable ledger ({exc})") from None

    # --- writing ---------------------------------------------------------------------

    def record(self, seen: Seen) -> None:
        if seen.verified and seen.envelope is not None:
            self.store(seen.envelope, seen.at_ms, seen.problem)
            if seen.problem is None:
                return
        payload = canonical(seen.envelope) if seen.envelope is not None else None
        self._db.execute(
            "INSERT INTO problems (received_ms, topic, device, seq, problem, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (seen.at_ms, seen.topic, seen.device, seen.seq, seen.problem, payload),
        )

    def store(self, env: Mapping[str, Any], received_ms: int, note: str | None = None) -> bool:
        """Keep one verified envelope; False if that (device, seq) was already there."""
        payload = canonical(env)
        digest = envelope_hash(env)
        have = self.lookup(str(env["device"]), int(env["seq"]))
        if have is not None:
            if have != digest:
                raise CentralError(
                    f"{self.path}: device {env['device']} seq {env['seq']} is already stored "
                    "with different content: refusing to overwrite evidence"
                )
            return False
        self._db.execute(
            "INSERT INTO events (device, seq, ts, type, sev, hash, received_ms, note, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                env["device"],
                env["seq"],
                env["ts"],
                env["type"],
                env["sev"],
                digest,
                received_ms,
                note,
                payload,
            ),
        )
        return True

    def commit(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def close(self) -> None:
        try:
            self._db.execute("COMMIT")
        finally:
            self._db.close()

    # --- reading ---------------------------------------------------------------------

    def lookup(self, device: str, seq: int) -> str | None:
        row = self._db.execute(
            "SELECT hash FROM events WHERE device = ? AND seq = ?", (device, seq)
        ).fetchone()
        return str(row[0]) if row else None

    def heads(self) -> dict[str, tuple[int, str]]:
        """Per device, the highest stored seq and its hash (where a restarted watch resumes)."""
        rows = self._db.execute(
            "SELECT device, seq, hash FROM events e WHERE seq = "
            "(SELECT max(seq) FROM events WHERE device = e.device)"
        )
        return {str(d): (int(s), str(h)) for d, s, h in rows}

    def events(
        self,
        keys: Mapping[str, VerifyKey],
        *,
        types: Iterable[str] | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stored envelopes in time order, each re-verified; a failure stops the reading."""
        where: list[str] = ["1=1"]
        args: list[object] = []
        if types is not None:
            kinds = sorted(set(types))
            where.append(f"type IN ({','.join('?' * len(kinds))})")
            args += kinds
        if since_ms is not None:
            where.append("ts >= ?")
            args.append(since_ms)
        if until_ms is not None:
            where.append("ts < ?")
            args.append(until_ms)
        query = (
            "SELECT device, seq, payload FROM events WHERE "
            + " AND ".join(where)
            + " ORDER BY ts, device, seq"
        )
        for device, seq, payload in self._db.execute(query, args):
            yield self._believe(str(device), int(seq), payload, keys)

    def _believe(
        self, device: str, seq: int, payload: bytes, keys: Mapping[str, VerifyKey]
    ) -> dict[str, Any]:
        key = keys.get(device)
        if key is None:
            raise CentralError(f"{self.path}: {device} seq {seq}: device not in the registry")
        try:
            env = parse_envelope(payload)
            check(env, key)
        except WireError as exc:
            raise CentralError(
                f"{self.path}: {device} seq {seq} does not verify ({exc}): "
                "the ledger was altered; run `cabinetctl verify` on it"
            ) from None
        if env["device"] != device or env["seq"] != seq:
            raise CentralError(f"{self.path}: row {device}/{seq} holds another envelope")
        return env
