"""Fixtures: the reference MCU on a real pty pair, and a recorder to wait on (no sleeps)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from firmware_bridge.mcu_firmware import McuFirmware
from firmware_bridge.mcu_sim import McuSimulator, PtyPair

# Fast but not twitchy: other test suites share this 2-core machine.
HEARTBEAT_MS = 100
FAILSAFE_MS = 1000
ACK_TIMEOUT_MS = 100
RETRIES = 3
TIMEOUT_S = 5.0


class Recorder:
    """Thread-safe list of whatever a callback receives, with waiting by condition."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[Any] = []

    def __call__(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def snapshot(self) -> list[Any]:
        with self._cond:
            return list(self.items)

    def wait_for(
        self, predicate: Callable[[list[Any]], bool], what: str, timeout: float = TIMEOUT_S
    ) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.items[-30:]}")
                self._cond.wait(left)
            return list(self.items)

    def wait_item(self, item: Any, after: int = 0) -> int:
        """Wait until `item` is recorded at index >= after; return its index."""
        items = self.wait_for(lambda xs: item in xs[after:], repr(item))
        return items.index(item, after)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> float:
    """Poll a condition without a notification of its own; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)
    return time.monotonic() - start


@dataclass
class PtyMcu:
    sim: McuSimulator
    pair: PtyPair

    @property
    def path(self) -> str:
        return self.pair.path


@pytest.fixture
def mcu() -> Iterator[PtyMcu]:
    pair = PtyPair()
    firmware = McuFirmware(
        slots={1: 682_000, 2: 0},
        failsafe_ms=FAILSAFE_MS,
        heartbeat_ms=HEARTBEAT_MS,
        weights_ms=100,
        ack_timeout_ms=ACK_TIMEOUT_MS,
        retries=RETRIES,
    )
    sim = McuSimulator(pair.master, firmware)
    sim.start()
    try:
        yield PtyMcu(sim, pair)
    finally:
        sim.close()
        pair.close()
