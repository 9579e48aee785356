"""The sans-I/O debounce on its own: fed levels and times, no threads, no sleeps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.debounce import Debouncer


def test_a_level_held_for_the_settle_time_is_reported_once() -> None:
    contact = Debouncer(settle_ms=30, level=False, now_ms=0)
    contact.feed(True, 100)
    assert contact.poll(129) is None
    assert contact.due_ms() == 130
    assert contact.poll(130) is True
    assert contact.poll(500) is None
    assert contact.settled is True


def test_a_bounce_shorter_than_the_settle_time_is_no_change() -> None:
    contact = Debouncer(settle_ms=30, level=False, now_ms=0)
    for t, level in [(100, True), (102, False), (105, True), (109, False)]:
        contact.feed(level, t)
    assert contact.due_ms() is None
    assert contact.poll(1000) is None
    assert contact.settled is False


def test_chatter_restarts_the_settle_time_from_the_last_edge() -> None:
    contact = Debouncer(settle_ms=30, level=False, now_ms=0)
    contact.feed(True, 100)
    contact.feed(False, 110)
    contact.feed(True, 120)
    assert contact.poll(149) is None
    assert contact.poll(150) is True


def test_repeated_reads_of_the_same_level_do_not_delay_it() -> None:
    contact = Debouncer(settle_ms=30, level=False, now_ms=0)
    contact.feed(True, 100)
    contact.feed(True, 125)
    assert contact.poll(130) is True


def test_zero_settle_time_reports_at_once() -> None:
    contact = Debouncer(settle_ms=0, level=True, now_ms=0)
    contact.feed(False, 7)
    assert contact.poll(7) is False


@given(
    settle=st.integers(min_value=1, max_value=50),
    edges=st.lists(st.tuples(st.integers(min_value=0, max_value=60), st.booleans()), max_size=40),
)
def test_every_report_is_a_level_that_held_still_for_the_settle_time(
    settle: int, edges: list[tuple[int, bool]]
) -> None:
    contact = Debouncer(settle_ms=settle, level=False, now_ms=0)
    now = 0
    history: list[tuple[int, bool]] = [(0, False)]
    reported = False
    for gap, level in edges:
        # Poll every millisecond in between, as a timer thread may.
        for t in range(now + 1, now + gap + 1):
            got = contact.poll(t)
            if got is not None:
                last_edge_t, last_level = history[-1]
                assert got == last_level != reported
                assert t - last_edge_t >= settle
                reported = got
        now += gap
        contact.feed(level, now)
        if level != history[-1][1]:
            history.append((now, level))
    final = contact.poll(now + settle)
    if final is not None:
        reported = final
    assert reported == history[-1][1]
