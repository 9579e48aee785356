"""Clocks: the seam that lets the same core run live, faster than life, and in replay."""

from __future__ import annotations

import threading
import time
from typing import Protocol

from rules.effects import Instant


class Clock(Protocol):
    def now(self) -> Instant: ...

    def seconds_until(self, mono_ms: int) -> float:
        """Real seconds to wait until the clock's monotonic time reaches `mono_ms`."""
        ...


class SystemClock:
    """Wall clock for records, the process's monotonic clock (from start) for timers."""

    def __init__(self) -> None:
        self._start_ns = time.monotonic_ns()

    def now(self) -> Instant:
        return Instant(
            time.time_ns() // 1_000_000, (time.monotonic_ns() - self._start_ns) // 1_000_000
        )

    def seconds_until(self, mono_ms: int) -> float:
        return max(0.0, (mono_ms - self.now().mono_ms) / 1000)


class ScaledClock:
    """Time running `speed` times faster from `start_wall_ms`: for `run --scenario --speed`,
    so that door-held and settle timers keep their meaning relative to the scene."""

    def __init__(self, start_wall_ms: int, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._start_wall = start_wall_ms
        self._speed = speed
        self._start_ns = time.monotonic_ns()

    def now(self) -> Instant:
        elapsed = int((time.monotonic_ns() - self._start_ns) / 1_000_000 * self._speed)
        return Instant(self._start_wall + elapsed, elapsed)

    def seconds_until(self, mono_ms: int) -> float:
        return max(0.0, (mono_ms - self.now().mono_ms) / 1000 / self._speed)


class VirtualClock:
    """Replay's clock: it only moves when told to."""

    def __init__(self, start_wall_ms: int) -> None:
        self._start = start_wall_ms
        self._mono = 0
        self._lock = threading.Lock()

    def set(self, mono_ms: int) -> None:
        with self._lock:
            if mono_ms < self._mono:
                raise ValueError("virtual time cannot go backwards")
            self._mono = mono_ms

    def now(self) -> Instant:
        with self._lock:
            return Instant(self._start + self._mono, self._mono)

    def seconds_until(self, mono_ms: int) -> float:
        return 0.0
