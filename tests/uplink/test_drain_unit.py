"""The drain's scheduling without a broker, a socket or a clock: an outbox in a dict, a wire
that hands out message ids, and time passed in by the test."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import wire
from agent.backoff import RefusalTracker
from agent.drain import MARK_BATCH, MARK_EVERY_S, PAGE, URGENT_EXTRA, Drain
from agent.outbox import Stored
from rules.inputs import UplinkRecovered, UplinkTrouble

NOT_AUTHORIZED = "Not authorized"


class MemoryOutbox:
    """The part of agent.outbox.Outbox the drain uses, in memory; `types` are committed."""

    def __init__(self, *types: str) -> None:
        self.rows: dict[int, Stored] = {}
        self.sent: set[int] = set()
        self.last_seq = 0
        self.disk_fails = False
        self.append(*types)

    def append(self, *types: str) -> list[wire.Envelope]:
        envelopes = []
        for type_ in types:
            self.last_seq += 1
            sev = "alarm" if type_.startswith("alarm.") else "info"
            payload = f"{self.last_seq}".encode()
            self.rows[self.last_seq] = Stored(self.last_seq, type_, sev, 0, payload)
            fields = {"seq": self.last_seq, "type": type_, "sev": sev}
            envelopes.append(wire.Envelope(fields, payload))
        return envelopes

    def unsent(self, limit: int, after_seq: int) -> list[Stored]:
        seqs = sorted(s for s in self.rows if s > after_seq and s not in self.sent)
        return [self.rows[s] for s in seqs[:limit]]

    def range(self, from_seq: int, to_seq: int) -> list[Stored]:
        return [self.rows[s] for s in sorted(self.rows) if from_seq <= s <= to_seq]

    def mark_sent(self, seqs: Iterable[int]) -> int:
        if self.disk_fails:
            raise sqlite3.OperationalError("disk I/O error")
        before = len(self.sent)
        self.sent.update(seqs)
        return len(self.sent) - before


class Wire:
    """What was published, in order, and what is waiting for a PUBACK."""

    def __init__(self) -> None:
        self.log: list[int] = []  # seqs, in publication order
        self.waiting: dict[int, int] = {}  # handle -> seq
        self.fail_after: int | None = None  # the link dies after this many more publishes
        self._mid = 0

    def publish(self, event_type: str, payload: bytes) -> int | None:
        if self.fail_after is not None:
            if self.fail_after == 0:
                return None
            self.fail_after -= 1
        self._mid += 1
        self.waiting[self._mid] = int(payload)
        self.log.append(int(payload))
        return self._mid

    def take(self, handles: Iterable[int] | None = None) -> list[tuple[int, int]]:
        """PUBACKs for `handles` (default: all waiting), as (handle, seq)."""
        chosen = list(self.waiting) if handles is None else list(handles)
        return [(h, self.waiting.pop(h)) for h in chosen]


def make_drain(outbox, *, window=8, rate=1e6, capacity=10_000, retry_min_s=1.0, retry_max_s=4.0):
    refusals = RefusalTracker(retry_min_s, retry_max_s, 10.0, 3, capacity)
    return Drain(outbox, refusals, window, rate, 0.0)


def answer(drain: Drain, link: Wire, now: float, refuse: Iterable[int] = ()) -> None:
    """A PUBACK for everything in flight: 0x87 for the seqs in `refuse`, success for the rest."""
    refused = set(refuse)
    for handle, seq in link.take():
        if seq in refused:
            drain.refused(handle, NOT_AUTHORIZED, now)
        else:
            drain.acked(handle, now)


def test_the_backlog_goes_out_in_seq_order_and_is_marked_sent_only_once_acked():
    outbox = MemoryOutbox(*["access.granted"] * 20)
    drain, link = make_drain(outbox, window=8), Wire()
    drain.pump(0.0, link.publish)
    assert link.log == list(range(1, 9))  # the window is full
    drain.pump(0.0, link.publish)
    assert len(link.log) == 8 and outbox.sent == set()
    for _ in range(3):
        answer(drain, link, 0.0)
        drain.pump(0.0, link.publish)
    answer(drain, link, 0.0)
    drain.flush_marks(0.0, force=True)
    assert link.log == list(range(1, 21)) and outbox.sent == set(range(1, 21))
    assert drain.stats()["published"] == drain.stats()["acked"] == 20


def test_a_backlog_of_several_pages_drains_without_being_notified():
    outbox = MemoryOutbox(*["env.reading"] * (2 * PAGE + 10))
    drain, link = make_drain(outbox, window=10_000), Wire()
    drain.pump(0.0, link.publish)
    assert link.log == list(range(1, 2 * PAGE + 11))


def test_an_alarm_overtakes_a_full_window_and_the_backlog_does_not_send_it_again():
    outbox = MemoryOutbox(*["env.reading"] * 100)
    drain, link = make_drain(outbox, window=4), Wire()
    drain.pump(0.0, link.publish)
    (alarm,) = outbox.append("alarm.raised")
    drain.notify([alarm])
    drain.pump(0.0, link.publish)
    assert link.log == [1, 2, 3, 4, alarm.seq]  # past the window of 4
    while len(outbox.sent) < outbox.last_seq:
        answer(drain, link, 0.0)
        drain.flush_marks(0.0, force=True)
        drain.pump(0.0, link.publish)
    assert link.log == [1, 2, 3, 4, alarm.seq, *range(5, 101)]


def test_an_alarm_the_backlog_already_sent_is_not_sent_again_when_notified_late():
    outbox = MemoryOutbox()
    drain, link = make_drain(outbox), Wire()
    late = outbox.append("access.granted", "alarm.raised")  # committed, notify not yet run
    drain.pump(0.0, link.publish)
    answer(drain, link, 0.0)
    drain.notify(late)
    drain.pump(0.0, link.publish)
    assert link.log == [1, 2]


def test_alarms_may_exceed_the_window_only_by_the_urgent_margin():
    outbox = MemoryOutbox()
    drain, link = make_drain(outbox, window=4), Wire()
    drain.notify(outbox.append(*["alarm.raised"] * 100))
    drain.pump(0.0, link.publish)
    assert len(link.waiting) == 4 + URGENT_EXTRA
    answer(drain, link, 0.0)
    drain.pump(0.0, link.publish)
    assert len(link.log) == 2 * (4 + URGENT_EXTRA)


def test_the_token_bucket_paces_the_backlog_but_not_alarms():
    outbox = MemoryOutbox(*["env.reading"] * 500)
    drain, link = make_drain(outbox, window=100, rate=1000), Wire()  # burst: the window
    drain.pump(0.0, link.publish)
    answer(drain, link, 0.0)
    drain.pump(0.0, link.publish)
    assert len(link.log) == 100  # the burst is spent
    assert abs(drain.idle_s(0.0, 0.5) - 0.001) < 1e-9
    drain.notify(outbox.append("alarm.raised"))
    drain.pump(0.0, link.publish)
    assert link.log[100:] == [501]  # an alarm needs no token
    drain.pump(0.01, link.publish)
    assert link.log[101:] == list(range(101, 111))  # 1000/s for 10 ms


def test_a_resend_range_goes_out_before_the_backlog_even_if_it_was_sent():
    outbox = MemoryOutbox(*["access.granted"] * 10)
    drain, link = make_drain(outbox, window=100), Wire()
    drain.pump(0.0, link.publish)
    answer(drain, link, 0.0)
    drain.flush_marks(0.0, force=True)
    outbox.append(*["access.granted"] * 2)
    drain.notify([])
    drain.request(3, 5)
    drain.request(9, 99)  # past the end: ends at the last seq
    drain.pump(0.0, link.publish)
    assert link.log[10:] == [3, 4, 5, 9, 10, 11, 12]  # 11, 12: once, not twice in flight
    assert drain.stats()["republished"] == 7


def test_acks_are_marked_in_batches_or_after_a_short_delay():
    outbox = MemoryOutbox(*["access.granted"] * (MARK_BATCH + 10))
    drain, link = make_drain(outbox, window=1000), Wire()
    drain.pump(0.0, link.publish)
    for handle, _ in link.take(list(link.waiting)[:10]):
        drain.acked(handle, 0.0)
    drain.flush_marks(0.0, force=False)
    assert outbox.sent == set()  # too few, too soon
    assert drain.idle_s(0.0, 0.5) == MARK_EVERY_S
    drain.flush_marks(MARK_EVERY_S, force=False)
    assert len(outbox.sent) == 10
    answer(drain, link, MARK_EVERY_S)
    drain.flush_marks(MARK_EVERY_S, force=False)
    assert len(outbox.sent) == MARK_BATCH + 10  # a full batch goes at once


def test_a_failed_mark_is_kept_for_the_next_try_and_counted():
    outbox = MemoryOutbox("access.granted", "access.granted")
    drain, link = make_drain(outbox), Wire()
    drain.pump(0.0, link.publish)
    answer(drain, link, 0.0)
    outbox.disk_fails = True
    drain.flush_marks(0.0, force=True)
    assert outbox.sent == set() and drain.stats()["mark_failed"] == 1
    outbox.disk_fails = False
    drain.flush_marks(0.0, force=True)
    assert outbox.sent == {1, 2}


def test_after_a_lost_connection_everything_unacknowledged_goes_out_again_in_order():
    outbox = MemoryOutbox(*["access.granted"] * 10)
    drain, link = make_drain(outbox, window=4), Wire()
    drain.pump(0.0, link.publish)
    for handle, _ in link.take(list(link.waiting)[1:3]):  # 2 and 3 are acked, 1 and 4 not
        drain.acked(handle, 0.0)
    link.fail_after = 2
    drain.pump(0.0, link.publish)  # 5 and 6 go out, then the link dies
    drain.connection_lost(0.0)
    link.waiting.clear()
    link.fail_after = None
    assert outbox.sent == {2, 3}  # the acks were marked before forgetting the rest
    drain.pump(0.0, link.publish)
    assert link.log[6:] == [1, 4, 5, 6]


def test_a_refused_event_stays_unsent_and_is_retried_after_its_backoff():
    outbox = MemoryOutbox("access.granted", "env.reading", "access.granted")
    drain, link = make_drain(outbox, retry_min_s=1.0), Wire()
    drain.pump(0.0, link.publish)
    answer(drain, link, 0.0, refuse=[2])
    assert drain.stats()["refused_pending"] == 1
    assert drain.idle_s(0.0, 5.0) == MARK_EVERY_S  # the marks first, then the retry
    drain.pump(0.5, link.publish)
    assert link.log == [1, 2, 3]
    drain.pump(1.0, link.publish)
    assert link.log == [1, 2, 3, 2]  # 1 and 3 were marked before re-reading the outbox
    assert outbox.sent == {1, 3}
    answer(drain, link, 1.0)
    drain.flush_marks(1.0, force=True)
    assert outbox.sent == {1, 2, 3} and drain.stats()["refused_pending"] == 0


def test_persistent_refusals_raise_a_sensor_fault_once_and_recover_once_accepted():
    outbox = MemoryOutbox("env.reading")
    drain, link = make_drain(outbox, retry_min_s=1.0, retry_max_s=1.0), Wire()
    now = 0.0
    news = []
    for _ in range(12):
        drain.pump(now, link.publish)
        answer(drain, link, now, refuse=[1])
        news.append(drain.refusal_news(now))
        now += 1.0
    faults = [n for n in news if n is not None]
    assert len(faults) == 1 and isinstance(faults[0], UplinkTrouble)
    assert faults[0].detail.startswith("publish_not_authorized: 1 events refused")
    drain.pump(now, link.publish)
    answer(drain, link, now)
    assert drain.refusal_news(now) == UplinkRecovered()
    assert drain.refusal_news(now + 5) is None


def test_refusals_past_the_capacity_are_counted_kept_unsent_and_retried_by_a_full_pass():
    outbox = MemoryOutbox(*["env.reading"] * 6, "access.granted")
    drain, link = make_drain(outbox, window=100, capacity=2), Wire()
    drain.pump(0.0, link.publish)
    with structlog.testing.capture_logs() as logs:
        answer(drain, link, 0.0, refuse=range(1, 7))
    drain.flush_marks(0.0, force=True)
    stats = drain.stats()
    assert stats["refused_pending"] == 2 and stats["refused_untracked"] == 4
    over = [e for e in logs if e["event"] == "uplink.refusals_over_capacity"]
    assert len(over) == 1 and over[0]["capacity"] == 2 and over[0]["seq"] == 3
    assert outbox.sent == {7}  # nothing lost: 1..6 wait in the outbox

    # The retry of the two tracked ones does not drag the four untracked along each time.
    drain.pump(1.0, link.publish)
    assert sorted(link.log[7:]) == [1, 2]
    answer(drain, link, 1.0, refuse=[1, 2])

    # A reconnect is a full pass: all six go out again.
    drain.connection_lost(1.5)
    drain.pump(1.5, link.publish)
    assert link.log[9:] == [3, 4, 5, 6]  # 1 and 2 still wait for their backoff
    answer(drain, link, 1.5, refuse=range(1, 7))
    assert drain.stats()["refused_untracked"] == 8

    # The ACL is fixed: the tracked ones are accepted, and the sweep sends the rest.
    drain.pump(3.0, link.publish)
    assert link.log[13:] == [1, 2]
    answer(drain, link, 3.0)
    drain.pump(3.0, link.publish)
    assert link.log[15:] == [3, 4, 5, 6]
    answer(drain, link, 3.0)
    drain.flush_marks(3.0, force=True)
    assert outbox.sent == set(range(1, 8)) and drain.stats()["refused_pending"] == 0


# --- whatever the order of PUBACKs and reconnects: all sent, none before its turn -------

ACTIONS = ["emit", "pump", "pump", "answer", "answer", "tick", "lose", "resend", "mark"]
EVENTS = st.lists(st.sampled_from(["access.granted", "env.reading", "alarm.raised"]), max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), capacity=st.sampled_from([1, 2, 5, 10_000]), backlog=st.integers(0, 40))
def test_every_event_is_eventually_marked_sent_and_only_alarms_jump_the_queue(
    data, capacity, backlog
):
    outbox = MemoryOutbox(*["env.reading"] * backlog)  # committed while the uplink was down
    drain = make_drain(outbox, window=4, rate=50, capacity=capacity, retry_min_s=0.1)
    link = Wire()
    published: set[int] = set()
    accepted: set[int] = set()
    this_connection: set[int] = set()
    unnotified: list[wire.Envelope] = []  # committed; the core has not called notify yet
    may_repeat: set[int] = set()  # refused, asked for by a resend, or see below
    now = 0.0
    acl_broken = True  # env.reading is refused until the end

    def pump() -> None:
        stats = drain.stats()
        if stats["refused_pending"] or stats["refused_untracked"]:
            # A retry re-reads the outbox; what was in flight then and is acked before
            # the drain gets to it goes out once more (harmless: consumers dedupe by seq).
            may_repeat.update(link.waiting.values())
        start = len(link.log)
        drain.pump(now, link.publish)
        for seq in link.log[start:]:
            if seq not in published and outbox.rows[seq].sev != "alarm":
                earlier = {s for s in outbox.rows if s < seq and outbox.rows[s].sev != "alarm"}
                assert earlier <= published, f"seq {seq} went out before its turn"
            published.add(seq)
            assert seq not in this_connection or seq in may_repeat, f"seq {seq} sent twice"
            this_connection.add(seq)
        assert len(link.waiting) <= 4 + URGENT_EXTRA
        assert len(set(link.waiting.values())) == len(link.waiting)  # never twice in flight

    def puback(handles: list[int]) -> None:
        for handle, seq in link.take(handles):
            if acl_broken and outbox.rows[seq].type == "env.reading":
                may_repeat.add(seq)
                drain.refused(handle, NOT_AUTHORIZED, now)
            else:
                accepted.add(seq)
                drain.acked(handle, now)

    def lose() -> None:
        drain.connection_lost(now)
        link.waiting.clear()
        this_connection.clear()

    for _ in range(data.draw(st.integers(1, 60), label="steps")):
        action = data.draw(st.sampled_from(ACTIONS))
        if action == "emit":
            unnotified.extend(outbox.append(*data.draw(EVENTS)))
            if data.draw(st.booleans(), label="notify now"):
                drain.notify(unnotified)
                unnotified.clear()
        elif action == "pump":
            link.fail_after = data.draw(st.none() | st.integers(0, 3))
            pump()
            if link.fail_after == 0:  # the uplink notices the dead link
                lose()
            link.fail_after = None
        elif action == "answer" and link.waiting:
            order = data.draw(st.permutations(list(link.waiting)))
            puback(order[: data.draw(st.integers(1, len(order)))])
        elif action == "tick":
            now += data.draw(st.floats(0.0, 1.0))
        elif action == "lose":
            lose()
        elif action == "resend" and published:
            top = max((s for s in published if outbox.rows[s].sev != "alarm"), default=0)
            lo = data.draw(st.integers(1, max(1, top)))
            hi = data.draw(st.integers(lo, max(lo, top)))
            may_repeat.update(range(lo, hi + 1))
            drain.request(lo, hi)
        elif action == "mark":
            drain.flush_marks(now, force=data.draw(st.booleans()))

    acl_broken = False
    drain.notify(unnotified)
    for _ in range(200):
        if outbox.sent == set(outbox.rows) and not link.waiting:
            break
        now += 0.5
        pump()
        puback(list(link.waiting))
        drain.flush_marks(now, force=False)
    assert outbox.sent == set(outbox.rows), f"never marked sent: {set(outbox.rows) - outbox.sent}"
    assert outbox.sent <= accepted  # marked only after a PUBACK that took it
    assert drain.stats()["refused_pending"] == 0
