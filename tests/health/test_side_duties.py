"""The daemon's side duties: small components with start/close, on real threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from agent.clocksync import ClockWatch
from agent.health import LoopMonitor, ProgressWatch
from agent.periodic import Periodic
from rules.inputs import ClockStatus


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def test_a_clock_that_gets_synchronised_is_told_to_the_core_once() -> None:
    answers = iter([False, False, True, True, True])
    posted: list[ClockStatus] = []
    watch = ClockWatch(posted.append, probe=lambda: next(answers))
    assert watch.ok is False
    for _ in range(4):
        watch.check()
    assert posted == [ClockStatus(True)] and watch.ok is True


def test_a_clock_the_kernel_cannot_answer_for_counts_as_unsynchronised() -> None:
    watch = ClockWatch(lambda status: None, probe=lambda: None)
    assert watch.ok is False


def test_the_uplink_watch_beats_only_while_the_uplink_makes_progress() -> None:
    now = [0.0]
    monitor = LoopMonitor(clock=lambda: now[0])
    monitor.register("uplink")
    progress, looks = [0], [0]

    def count() -> int:
        looks[0] += 1
        return progress[0]

    now[0] = 10.0
    with ProgressWatch(monitor, "uplink", count, 0.01):
        assert wait_for(lambda: monitor.silent_for()["uplink"] == 0.0)  # first look
        now[0], seen = 20.0, looks[0]
        assert wait_for(lambda: looks[0] >= seen + 3)  # looks at a counter that stays put
        assert monitor.silent_for()["uplink"] == 10.0
        progress[0] = 1
        assert wait_for(lambda: monitor.silent_for()["uplink"] == 0.0)


def test_a_failing_turn_is_counted_and_the_next_turn_still_runs() -> None:
    turns = []

    def flaky() -> None:
        turns.append(1)
        if len(turns) == 1:
            raise RuntimeError("a bug in one turn")

    with Periodic("flaky", 0.01, flaky) as task:
        assert wait_for(lambda: len(turns) >= 3)
    assert task.failures == 1


def test_close_stops_the_thread_promptly_even_with_a_long_period() -> None:
    ran = threading.Event()
    task = Periodic("slow", 3600, ran.set, at_start=True)
    task.start()
    assert ran.wait(5)
    started = time.monotonic()
    task.close()
    assert time.monotonic() - started < 1.0
    assert not any(t.name == "slow" for t in threading.enumerate())
