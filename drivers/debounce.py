"""Contact debounce with no I/O: fed (level, now_ms), asked what has settled.

A reed switch or a float contact chatters for a few milliseconds when it moves, and a
relay coil nearby couples spikes into long cabinet wiring. A level is reported only
once it has held still for `settle_ms`; a bounce that returns to the settled level
before then is no change at all. The caller owns the clock and the timer (see
drivers.gpio), which keeps this testable without threads or sleeps. gpiozero's own
`bounce_time` is not used: it is a lockout after an edge (it can miss the final level)
and MockPin ignores it, so it could not be tested.
"""

from __future__ import annotations


class Debouncer:
    def __init__(self, settle_ms: int, level: bool, now_ms: int) -> None:
        if settle_ms < 0:
            raise ValueError("settle_ms must not be negative")
        self.settle_ms = settle_ms
        self._settled = level
        self._candidate = level
        self._since_ms = now_ms

    @property
    def settled(self) -> bool:
        """The last level that held still long enough (the one reported)."""
        return self._settled

    def feed(self, level: bool, now_ms: int) -> None:
        """A level was observed at `now_ms` (an edge, or a fresh read of the line)."""
        if level != self._candidate:
            self._candidate = level
            self._since_ms = now_ms

    def due_ms(self) -> int | None:
        """When `poll` could next report a change; None while nothing is pending."""
        if self._candidate == self._settled:
            return None
        return self._since_ms + self.settle_ms

    def poll(self, now_ms: int) -> bool | None:
        """The newly settled level if one settled by `now_ms`, else None (once per change)."""
        due = self.due_ms()
        if due is None or now_ms < due:
            return None
        self._settled = self._candidate
        return self._settled
