"""The ingest's queue: alarms first, acknowledgements in the broker's order (sans-I/O)."""

from __future__ import annotations

import queue

from hypothesis import given
from hypothesis import strategies as st

from central.ingest.client import Incoming
from central.ingest.pipeline import InOrderAcks


def _message(order: int, alarm: bool) -> Incoming:
    topic = f"cabinet/lab/cab-1/evt/{'alarm' if alarm else 'env'}"
    return Incoming(0 if alarm else 1, order, topic, b"{}", order + 100, 1)


def test_an_alarm_overtakes_a_backlog_of_telemetry() -> None:
    waiting: queue.PriorityQueue[Incoming] = queue.PriorityQueue()
    for order in range(5):
        waiting.put(_message(order, alarm=False))
    waiting.put(_message(5, alarm=True))
    assert [waiting.get().order for _ in range(6)] == [5, 0, 1, 2, 3, 4]


@given(st.permutations(list(range(12))), st.sets(st.integers(0, 11), max_size=3))
def test_acknowledgements_go_out_in_arrival_order_whatever_order_was_stored(
    stored_order: list[int], failed: set[int]
) -> None:
    sent: list[int] = []
    acks = InOrderAcks(lambda m: sent.append(m.order))
    for order in stored_order:
        acks.finished([_message(order, alarm=order % 3 == 0)], stored=order not in failed)
        assert sent == sorted(sent)  # never one before an earlier one
    assert sent == [o for o in range(12) if o not in failed]
