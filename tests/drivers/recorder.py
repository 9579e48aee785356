"""A thread-safe stand-in for the core's inbox that tests can wait on (no fixed sleeps)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rules.inputs import AnyInput


class Inbox:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[AnyInput] = []
        self.times: list[float] = []  # time.monotonic() of each item's arrival

    def post(self, item: AnyInput) -> None:
        with self._cond:
            self.items.append(item)
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def arrival(self, index: int) -> float:
        with self._cond:
            return self.times[index]

    def snapshot(self) -> list[AnyInput]:
        with self._cond:
            return list(self.items)

    def wait_for(
        self, predicate: Callable[[list[AnyInput]], bool], timeout: float = 5.0, what: str = ""
    ) -> list[AnyInput]:
        """Wait until `predicate(items)` holds; fail with what arrived if it never does."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    waited = what or predicate
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {waited}; got {self.items}"
                    )
                self._cond.wait(left)
            return list(self.items)

    def wait_for_item(self, item: AnyInput, timeout: float = 5.0, after: int = 0) -> int:
        """Wait until `item` arrives at index >= `after`; returns its index."""
        items = self.wait_for(lambda xs: item in xs[after:], timeout, what=repr(item))
        return items.index(item, after)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll a condition that has no notification of its own (counters, pin states)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.01)
