"""A small thread that does one thing every `period_s` until it is closed.

The daemon's side duties (status and heartbeat, the clock check, watching the uplink's
progress) are each one of these, with the gpiozero discipline: `start()`, `close()`,
usable as a context manager. A failing turn is logged and counted, never fatal: the
next turn tries again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("periodic")


class Periodic:
    def __init__(
        self, name: str, period_s: float, action: Callable[[], None], *, at_start: bool = False
    ) -> None:
        self.name, self.period_s, self._action = name, period_s, action
        self._at_start = at_start  # act once right away, not only after the first period
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 2.0) -> None:
        self._closed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def __enter__(self) -> Periodic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        if self._at_start:
            self._turn()
        while not self._closed.wait(self.period_s):
            self._turn()

    def _turn(self) -> None:
        try:
            self._action()
        except Exception:
            self.failures += 1
            log.exception("periodic.failed", task=self.name, failures=self.failures)
