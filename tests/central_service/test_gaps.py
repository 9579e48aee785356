"""Asking cabinets for missing seqs: after a grace, once per process group, with backoff."""

from __future__ import annotations

from collections.abc import Callable

from central.store import Store
from tests.central.cabinet import FakeCabinet
from tests.central_service.conftest import Feed

Feeder = Callable[..., Feed]
RULES = {"grace_ms": 1000, "retry_ms": 5000, "max_range": 1000}


def test_a_gap_is_asked_for_after_the_grace_by_exactly_one_asker(
    store: Store, feed: Feeder
) -> None:
    cab = FakeCabinet()
    for i in range(8):
        cab.emit("system.heartbeat", {"uptime_s": i})
    f = feed(cab)
    f.send(cab, cab.envelopes[0], cab.envelopes[3], cab.envelopes[6], cab.envelopes[7])
    assert store.cabinets()[0].missing == ((2, 3), (5, 6))
    assert store.due_resends(10_000, **RULES) == []  # noticed, not asked: reordering is normal
    assert store.due_resends(10_500, **RULES) == []
    (ask,) = store.due_resends(11_000, **RULES)
    assert (ask.device, ask.lo, ask.hi, ask.attempt) == (cab.device, 2, 6, 1)
    assert store.due_resends(11_000, **RULES) == []  # the other process loses the race
    assert store.due_resends(15_999, **RULES) == []
    assert [a.attempt for a in store.due_resends(16_000, **RULES)] == [2]
    assert store.due_resends(16_000 + 9_999, **RULES) == []  # backoff doubles
    assert [a.attempt for a in store.due_resends(26_000, **RULES)] == [3]
    f.send(cab, *cab.envelopes[1:6])
    assert store.due_resends(100_000, **RULES) == []
    assert store.cabinets()[0].missing == ()


def test_seqs_past_the_last_stored_one_are_asked_for_from_the_status_birth(
    store: Store, feed: Feeder
) -> None:
    cab = FakeCabinet()
    f = feed(cab)
    f.send(cab, cab.emit("system.heartbeat", {}))
    for _ in range(4):
        cab.emit("system.heartbeat", {})
    f.raw(f"cabinet/{cab.site}/{cab.device}/status", cab.status("online"))
    assert store.cabinets()[0].missing == ((2, 5),)
    assert store.due_resends(0, **RULES) == []
    assert store.due_resends(1000, **RULES) == []  # the device drains its backlog first
    (ask,) = store.due_resends(5000, **RULES)
    assert (ask.lo, ask.hi) == (2, 5)


def test_one_ask_never_spans_more_than_the_maximum_range(store: Store, feed: Feeder) -> None:
    cab = FakeCabinet()
    for _ in range(30):
        cab.emit("system.heartbeat", {})
    f = feed(cab)
    f.send(cab, cab.envelopes[0], cab.envelopes[29])
    store.due_resends(0, **(RULES | {"max_range": 10}))
    (ask,) = store.due_resends(1000, **(RULES | {"max_range": 10}))
    assert (ask.lo, ask.hi) == (2, 11)
