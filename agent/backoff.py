"""When the uplink tries again: reconnect backoff, drain pacing, retry of refused events.

Reconnects back off exponentially with jitter and a cap: after a broker restart every
cabinet of a site reconnects at once; the jitter spreads them out, and the cap keeps a
cabinet from waiting hours once the broker is back. Pure logic: callers pass the time.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Final

# About 2.8 MB of tracking (measured); past it, refused events wait in the outbox untracked.
REFUSED_CAPACITY: Final = 10_000


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


class ReconnectSchedule:
    """When to dial the broker again, and how long a dialled broker has to send CONNACK."""

    def __init__(self, backoff: Backoff, connack_timeout_s: float) -> None:
        self.backoff = backoff
        self.connack_timeout_s = connack_timeout_s
        self._next_attempt = 0.0
        self._connack_deadline = 0.0

    def failed(self, now: float) -> float:
        """A dial or a connection failed: the delay before the next dial."""
        delay = self.backoff.next()
        self._next_attempt = now + delay
        return delay

    def wait_s(self, now: float) -> float:
        """Seconds until the next dial is due (0 if it is)."""
        return max(0.0, self._next_attempt - now)

    def dialled(self, now: float) -> None:
        self._connack_deadline = now + self.connack_timeout_s

    def connack_overdue(self, now: float) -> bool:
        return now > self._connack_deadline

    def connected(self) -> None:
        self.backoff.reset()


class TokenBucket:
    """Paces the backlog drain (docs/protocol.md: delivery is ordered and rate-bounded).

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


@dataclass
class Refusal:
    first: float  # monotonic time of the first refusal
    attempts: int
    due: float  # next retry
    reason: str


class RefusalTracker:
    """Events the broker refused (MQTT 5 PUBACK >= 0x80, e.g. 0x87 Not authorized).

    They stay unsent in the outbox; each is retried with its own capped backoff, and
    `persisting` says when refusals have lasted long enough to warn someone (an ACL
    mistake on the broker does not heal by itself). At most `capacity` events are
    tracked: an ACL mistake left for days must not grow the agent's memory without end.
    """

    def __init__(
        self,
        retry_min_s: float,
        retry_max_s: float,
        warn_after_s: float,
        warn_min_attempts: int,
        capacity: int = REFUSED_CAPACITY,
    ) -> None:
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.warn_after_s = warn_after_s
        self.warn_min_attempts = warn_min_attempts
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._by_seq: dict[int, Refusal] = {}
        self._due: list[tuple[float, int]] = []  # heap; stale entries are skipped

    def __len__(self) -> int:
        return len(self._by_seq)

    def __contains__(self, seq: object) -> bool:
        return seq in self._by_seq

    @property
    def full(self) -> bool:
        return len(self._by_seq) >= self.capacity

    def refuse(self, seq: int, reason: str, now: float) -> Refusal | None:
        """Track one more refusal of `seq`; None if it is new and the tracker is full."""
        refusal = self._by_seq.get(seq)
        if refusal is None:
            if self.full:
                return None
            refusal = self._by_seq[seq] = Refusal(now, 0, now, reason)
        refusal.attempts += 1
        refusal.reason = reason
        delay = self.retry_min_s * 2 ** min(refusal.attempts - 1, 20)
        refusal.due = now + min(self.retry_max_s, delay)
        heapq.heappush(self._due, (refusal.due, seq))
        return refusal

    def accepted(self, seq: int) -> bool:
        """The broker took it after all; True if it had been refused before."""
        return self._by_seq.pop(seq, None) is not None

    def waiting(self, seq: int, now: float) -> bool:
        """Refused and not yet due for a retry: the drain skips it."""
        refusal = self._by_seq.get(seq)
        return refusal is not None and refusal.due > now

    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    def pop_due(self, now: float) -> list[int]:
        seqs = []
        while self._due and self._due[0][0] <= now:
            due, seq = heapq.heappop(self._due)
            refusal = self._by_seq.get(seq)
            if refusal is not None and refusal.due == due:
                seqs.append(seq)
        return seqs

    def persisting(self, now: float) -> tuple[int, Refusal] | None:
        """The oldest refusal if it has lasted `warn_after_s` and `warn_min_attempts`."""
        if not self._by_seq:
            return None
        seq, oldest = min(self._by_seq.items(), key=lambda item: item[1].first)
        if now - oldest.first >= self.warn_after_s and oldest.attempts >= self.warn_min_attempts:
            return seq, oldest
        return None
