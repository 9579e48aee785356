"""Reading what the cabinet under test did: its outbox, its output lines, its inputs.

The outbox is read through a read-only connection (WAL readers never block the core),
and holds exactly what is published.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.base import Post
from rules.inputs import AnyInput, WeightReading
from tests.hardware.wiring import CabinetPins


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class OutboxView:
    """Read-only view of the agent's outbox: the committed, signed envelopes in seq order."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.db.exists():
            return []
        connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute(sql, args).fetchall()
        finally:
            connection.close()

    def envelopes(self, after_seq: int = 0) -> list[dict[str, Any]]:
        rows = self._query("SELECT payload FROM events WHERE seq > ? ORDER BY seq", (after_seq,))
        return [json.loads(payload) for (payload,) in rows]

    def payload(self, seq: int) -> bytes:
        rows = self._query("SELECT payload FROM events WHERE seq = ?", (seq,))
        assert rows, f"no event with seq {seq}"
        return bytes(rows[0][0])

    def last_seq(self) -> int:
        rows = self._query("SELECT max(seq) FROM events")
        return int(rows[0][0] or 0) if rows else 0

    def of(self, event_type: str, **data: Any) -> list[dict[str, Any]]:
        """Envelopes of one type whose data contains every given key/value."""
        return [
            env
            for env in self.envelopes()
            if env["type"] == event_type and all(env["data"].get(k) == v for k, v in data.items())
        ]

    def types(self) -> list[str]:
        return [env["type"] for env in self.envelopes()]

    def wait_for(self, event_type: str, timeout: float = 5.0, **data: Any) -> dict[str, Any]:
        """The first such envelope, waiting for it; fails listing what was committed."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.of(event_type, **data)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                seen = [(e["seq"], e["type"], e["data"]) for e in self.envelopes()]
                raise AssertionError(
                    f"no {event_type} {data or ''} within {timeout} s; committed: {seen}"
                )
            time.sleep(0.02)

    def alarms(self, kind: str) -> list[dict[str, Any]]:
        return self.of("alarm.raised", kind=kind)


@dataclass
class OutputChange:
    on: bool
    at: float  # time.monotonic()
    committed_seq: int  # last seq in the outbox when the line moved


class OutputLog:
    """Watches one output line: each change, with what the outbox held at that moment.

    The agent applies an output only after the event that causes it is durable; the
    watcher runs in the core thread at the very moment the line moves, so
    `committed_seq` shows which events had been committed by then.
    """

    def __init__(self, pins: CabinetPins, number: int, outbox: OutboxView) -> None:
        self.changes: list[OutputChange] = []
        self._outbox = outbox
        pins.watch(number, self._changed)

    def _changed(self, on: bool) -> None:
        self.changes.append(OutputChange(on, time.monotonic(), self._outbox.last_seq()))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[OutputChange]:
        """The first `count` changes, once recorded: the line's level moves a moment
        before its watcher runs, so a test that saw the level must still wait here."""
        wait_until(lambda: len(self.changes) >= count, timeout, f"{count} output changes")
        return self.changes[:count]


class InputTap:
    """Stands in front of the core's inbox: records what the drivers post, then passes it."""

    def __init__(self, post: Post) -> None:
        self._post = post
        self._lock = threading.Lock()
        self.items: list[AnyInput] = []

    def __call__(self, item: AnyInput) -> None:
        with self._lock:
            self.items.append(item)
        self._post(item)

    def snapshot(self) -> list[AnyInput]:
        with self._lock:
            return list(self.items)

    def wait_for(self, item: AnyInput, timeout: float = 5.0) -> None:
        wait_until(lambda: item in self.snapshot(), timeout, f"{item!r} posted to the core")

    def weights(self) -> dict[int, int]:
        """The last weight posted for each slot."""
        return {x.slot: x.mg for x in self.snapshot() if isinstance(x, WeightReading)}
