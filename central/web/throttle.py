"""Too many wrong passwords for one login: that login waits, whoever is trying.

The password hash is memory-hard, which slows guessing on one machine; this stops a
guess list tried against one account from the network. It is per `serve` process (each
one counts its own), which bounds guesses to a few per process per window.
"""

from __future__ import annotations

import threading
import time
from collections import deque

FAILURES_ALLOWED = 5
WINDOW_S = 300.0


class SignInThrottle:
    def __init__(self, allowed: int = FAILURES_ALLOWED, window_s: float = WINDOW_S) -> None:
        self._allowed = allowed
        self._window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, login: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(login.lower(), deque())
        while failures and now - failures[0] > self._window_s:
            failures.popleft()
        return failures

    def wait_s(self, login: str) -> int:
        """Seconds before `login` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(login, now)
            if len(failures) < self._allowed:
                return 0
            return max(1, int(self._window_s - (now - failures[0])) + 1)

    def failed(self, login: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(login, now).append(now)
            if len(self._failures) > 10_000:  # a flood of invented logins: forget the oldest
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, login: str) -> None:
        with self._lock:
            self._failures.pop(login.lower(), None)
