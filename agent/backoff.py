"""Reconnect delays: exponential, capped, with jitter.

After a broker restart every cabinet of a site reconnects at once; the jitter spreads
them out, and the cap keeps a cabinet from waiting hours once the broker is back.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s = min_s
        self.max_s = max(min_s, max_s)
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt; grows with each call until reset()."""
        if self._attempt == 0:
            # First retry after a connection that was up: anywhere in [0, min] so a
            # fleet does not hit the restarted broker in the same millisecond.
            delay = self._rng.uniform(0, self.min_s)
        else:
            ceiling = min(self.max_s, self.min_s * 2 ** min(self._attempt, 30))
            delay = self._rng.uniform(ceiling / 2, ceiling)
        self._attempt += 1
        return delay

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt


class TokenBucket:
    """Paces the backlog drain (DESIGN.md §5: ordered, rate-bounded).

    `burst` tokens at most, refilled at `rate_per_s`; the caller passes monotonic time
    so tests can drive it without sleeping.
    """

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        self.rate = rate_per_s
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._at = now

    def available(self, now: float) -> int:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return int(self._tokens)

    def spend(self, count: int) -> None:
        self._tokens -= count

    def wait_s(self, now: float) -> float:
        """Seconds until one token is available (0 if one is)."""
        missing = 1.0 - self._tokens - (now - self._at) * self.rate
        return max(0.0, missing / self.rate)
