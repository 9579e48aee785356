"""WatchState, sans-I/O: what watch believes, shows, flags and asks for."""

from __future__ import annotations

from pathlib import Path

from agent.wire import VerifyKey
from central.chain import Timing
from central.registry import Device, Registry
from central.store import Alarm as StoredAlarm
from central.watch import WatchState
from tests.central.cabinet import FakeCabinet, forge

T0 = 1_000_000


def registry(*cabinets: FakeCabinet) -> Registry:
    return Registry(
        Path("devices.toml"),
        {c.device: Device(c.device, c.site, "", VerifyKey.from_text(c.pubkey)) for c in cabinets},
    )


def feed(state: WatchState, cab: FakeCabinet, indexes: list[int], now: int = T0) -> list:
    shown = []
    for i in indexes:
        env = cab.envelopes[i]
        shown += state.on_message(cab.topic(env), env.payload, now).shown
    return shown


def cabinet_with(n: int, device: str = "cab-1") -> FakeCabinet:
    cab = FakeCabinet(device)
    for i in range(n):
        cab.emit("door.opened", {"session": f"S{i}"})
    return cab


def test_a_clean_stream_is_shown_verified_in_order() -> None:
    cab = cabinet_with(4)
    state = WatchState(registry(cab))
    shown = feed(state, cab, [0, 1, 2, 3])
    assert [(s.verified, s.problem, s.seq) for s in shown] == [
        (True, None, n) for n in (1, 2, 3, 4)
    ]


def test_at_least_once_delivery_is_deduplicated_silently() -> None:
    cab = cabinet_with(3)
    state = WatchState(registry(cab))
    assert len(feed(state, cab, [0, 1, 1, 2, 0, 2])) == 3
    assert state.chains["cab-1"].duplicates == 3


def test_a_forged_a_modified_and_an_unknown_envelope_are_flagged_never_dropped() -> None:
    cab, impostor, stranger = cabinet_with(2), cabinet_with(2), cabinet_with(1, "cab-x")
    state = WatchState(registry(cab))
    shown = feed(state, cab, [0])
    shown += feed(state, impostor, [1])  # right device id, wrong key
    modified = forge(cab.envelopes[1], data={"session": "S-evil"})
    shown += state.on_message(cab.topic(cab.envelopes[1]), modified, T0).shown
    shown += feed(state, stranger, [0])
    shown += state.on_message("cabinet/lab/cab-1/evt/door", b"{not json", T0).shown
    assert shown[0].verified
    flagged = [(s.verified, s.device, s.problem) for s in shown[1:]]
    assert flagged[0][:2] == (False, "cab-1") and "bad signature" in str(flagged[0][2])
    assert flagged[1][:2] == (False, "cab-1") and "bad signature" in str(flagged[1][2])
    assert flagged[2][:2] == (False, "cab-x") and "unknown device" in str(flagged[2][2])
    assert flagged[3][:2] == (False, "cab-1") and "malformed" in str(flagged[3][2])
    assert state.counts["problems"] == 4
    # The genuine seq 2 is still accepted afterwards: a forgery does not poison the chain.
    assert [(s.verified, s.seq) for s in feed(state, cab, [1])] == [(True, 2)]


def test_an_envelope_on_another_devices_topic_is_flagged() -> None:
    a, b = cabinet_with(1, "cab-a"), cabinet_with(1, "cab-b")
    state = WatchState(registry(a, b))
    shown = state.on_message(b.topic(b.envelopes[0]), a.envelopes[0].payload, T0).shown
    assert not shown[0].verified and "does not match the envelope" in str(shown[0].problem)


def test_a_gap_holds_later_events_asks_for_a_resend_and_fills_in_order() -> None:
    cab = cabinet_with(6)
    state = WatchState(registry(cab), timing=Timing(grace_ms=1000, hold_ms=5000))
    assert [s.seq for s in feed(state, cab, [0, 1])] == [1, 2]
    assert feed(state, cab, [4, 5]) == []  # 5 and 6 wait for 3..4
    assert state.tick(T0 + 500).resends == []  # cross-topic reordering may still settle it
    asks = state.tick(T0 + 1000).resends
    assert [(r.device, r.site, r.from_seq, r.to_seq) for r in asks] == [("cab-1", "lab", 3, 4)]
    assert state.tick(T0 + 2000).resends == []  # not again before retry_ms
    shown = feed(state, cab, [2, 3], now=T0 + 2500)
    assert [(s.seq, s.verified, s.problem) for s in shown] == [
        (3, True, None),
        (4, True, None),
        (5, True, None),
        (6, True, None),
    ]
    assert state.chains["cab-1"].open_gaps() == []


def test_a_gap_that_never_fills_releases_held_events_flagged_and_is_reported() -> None:
    cab = cabinet_with(4)
    timing = Timing(grace_ms=100, hold_ms=3000, retry_ms=1000, max_asks=2)
    state = WatchState(registry(cab), timing=timing)
    feed(state, cab, [0, 3])
    step = state.tick(T0 + 3000)
    assert [(s.seq, s.problem) for s in step.shown] == [
        (4, "shown before seq 2..3 arrived (gap; resend asked)")
    ]
    assert len(step.resends) == 1
    assert len(state.tick(T0 + 4000).resends) == 1
    gave_up = state.tick(T0 + 5000)
    assert gave_up.resends == []
    assert [s.problem for s in gave_up.shown] == ["seq 2..3 still missing after 2 resend requests"]
    late = feed(state, cab, [1], now=T0 + 6000)
    assert [(s.seq, s.verified, s.problem) for s in late] == [
        (2, True, "late: arrived after later seqs were shown")
    ]


def test_a_gap_attested_by_outbox_dropped_is_not_asked_for() -> None:
    cab = FakeCabinet()
    for _ in range(3):
        cab.emit("env.reading", {"voc_ppb": 1})
    cab.emit("system.outbox_dropped", {"count": 2, "from_seq": 2, "to_seq": 3})
    state = WatchState(registry(cab), timing=Timing(grace_ms=0))
    feed(state, cab, [0, 3])
    step = state.tick(T0 + 1)
    assert step.resends == []
    assert any("shed by the device" in str(s.problem) for s in step.shown)


def test_a_fork_of_the_chain_is_flagged() -> None:
    cab = cabinet_with(2)
    other = FakeCabinet(cab.device, key=cab.key)  # same key, different history
    other.emit("door.opened", {"session": "X"})
    other.emit("door.opened", {"session": "Y"})
    state = WatchState(registry(cab))
    feed(state, cab, [0])
    shown = feed(state, other, [1])
    assert not shown[0].verified and "chain broken" in str(shown[0].problem)
    conflict = feed(state, other, [0])
    assert "two different envelopes claim seq 1" in str(conflict[0].problem)


def test_alarms_open_ack_and_clear_only_from_verified_events() -> None:
    cab, impostor = FakeCabinet(), FakeCabinet()
    cab.emit("alarm.raised", {"alarm": "A1", "kind": "door_forced"})
    cab.emit("alarm.raised", {"alarm": "A2", "kind": "leak"})
    cab.emit("command.applied", {"name": "ack", "nonce": "n", "alarm": "A1"})
    cab.emit("alarm.cleared", {"alarm": "A2", "kind": "leak"})
    impostor.emit("alarm.cleared", {"alarm": "A1", "kind": "door_forced"})
    state = WatchState(registry(cab))
    step = state.on_message(cab.topic(cab.envelopes[0]), cab.envelopes[0].payload, T0)
    assert [(a.alarm, a.kind, a.acked) for a in step.new_alarms] == [("A1", "door_forced", False)]
    feed(state, cab, [1])
    assert [a.alarm for a in state.open_alarms()] == ["A1", "A2"]
    feed(state, cab, [2, 3])
    assert [(a.alarm, a.acked) for a in state.open_alarms()] == [("A1", True)]
    forged_clear = impostor.envelopes[0]
    state.on_message(cab.topic(forged_clear), forged_clear.payload, T0)
    assert [a.alarm for a in state.open_alarms()] == ["A1"]


def test_status_is_shown_a_key_mismatch_is_loud_and_a_tail_gap_is_asked_for() -> None:
    cab = cabinet_with(2)
    state = WatchState(registry(cab), timing=Timing(tail_grace_ms=30_000))
    feed(state, cab, [0])
    topic = "cabinet/lab/cab-1/status"
    step = state.on_message(topic, cab.status("online"), T0)
    assert step.statuses[0].state == "online" and step.statuses[0].last_seq == 2
    assert state.tick(T0 + 29_000).resends == []  # the device drains its backlog first
    assert [(r.from_seq, r.to_seq) for r in state.tick(T0 + 30_000).resends] == [(2, 2)]
    offline = state.on_message(topic, cab.status("offline"), T0)
    assert offline.statuses[0].state == "offline"
    liar = FakeCabinet(cab.device)
    step = state.on_message(topic, liar.status("online"), T0)
    assert "different public key" in str(step.statuses[0].problem)
    assert any("different public key" in str(s.problem) for s in step.shown)


def test_seeded_from_the_ledger_a_restart_notices_what_it_missed() -> None:
    cab = cabinet_with(5)
    state = WatchState(
        registry(cab), timing=Timing(grace_ms=0), lookup=lambda d, s: cab.envelopes[s - 1].hash
    )
    state.chain("cab-1").seed(2, cab.envelopes[1].hash)
    assert feed(state, cab, [1]) == []  # already stored: a duplicate
    feed(state, cab, [4])
    assert [(r.from_seq, r.to_seq) for r in state.tick(T0).resends] == [(3, 4)]


def test_a_late_event_is_listed_in_seq_order_not_after_the_later_ones() -> None:
    cab, other = cabinet_with(4), cabinet_with(2, "cab-2")
    state = WatchState(registry(cab, other), timing=Timing(grace_ms=100, hold_ms=3000))
    feed(state, cab, [0, 2, 3])
    state.tick(T0 + 3000)  # seqs 3 and 4 shown before 2 arrived
    feed(state, other, [0, 1], now=T0 + 3500)
    feed(state, cab, [1], now=T0 + 4000)  # the resend answered: seq 2, late
    logged = [(s.device, s.seq) for s in state.log if s.verified]
    assert logged == [
        ("cab-1", 1),
        ("cab-1", 2),
        ("cab-1", 3),
        ("cab-1", 4),
        ("cab-2", 1),
        ("cab-2", 2),
    ]
    assert next(s for s in state.log if s.seq == 2 and s.device == "cab-1").problem == (
        "late: arrived after later seqs were shown"
    )


def test_alarms_loaded_from_the_store_replace_what_this_run_saw() -> None:
    cab = cabinet_with(1)
    state = WatchState(registry(cab))
    stored = [
        StoredAlarm("cab-1", "A1-3", "leak", T0, "p-1001", "mopped", None, None),
        StoredAlarm("cab-1", "A2-1", "door_forced", T0 + 5, None, None, None, None),
        StoredAlarm("cab-1", "A1-1", "tamper", T0 - 5, None, None, T0, "resolved"),
    ]
    state.load_alarms(stored)
    assert [(a.alarm, a.acked, a.acked_by) for a in state.open_alarms()] == [
        ("A2-1", False, None),
        ("A1-3", True, "p-1001"),
    ]


def test_a_fresh_watch_that_first_sees_seq_2_still_lists_seq_1_above_it() -> None:
    cab = cabinet_with(3)
    state = WatchState(registry(cab))
    feed(state, cab, [1, 0, 2])  # seq 2 (evt/door) overtook seq 1 on another topic
    assert [s.seq for s in state.log] == [1, 2, 3]
