"""Store-and-forward under broker outages, and backlog drain with alarms overtaking it."""

from __future__ import annotations

import json
import random
import threading
import time

from tests.support.fixtures import Received
from tests.uplink.rig import broker_config, draft, make_rig, topic, wait_until

ALARM_EVERY = 97


def _parse(messages: list[Received]) -> list[tuple[int, str]]:
    return [(int(e["seq"]), str(e["sev"])) for e in (json.loads(m.payload) for m in messages)]


def assert_first_arrivals_in_seq_order(received: list[tuple[int, str]]) -> None:
    """Consumers order by seq: duplicates may come, but the first time each non-alarm seq
    arrives it is above every earlier non-alarm (alarms may overtake a backlog)."""
    seen: set[int] = set()
    last = 0
    for seq, sev in received:
        if seq in seen:
            continue
        seen.add(seq)
        if sev == "alarm":
            continue
        assert seq > last, f"seq {seq} first arrived after {last}"
        last = seq


def test_5000_events_survive_five_broker_restarts_none_missing(tmp_path, make_broker, recorder):
    broker = make_broker(tls=False, persistence=True)
    # A persistent session: what the broker accepted but had not yet delivered to us is
    # kept across its (graceful, persistence-saving) restarts.
    rec = recorder(
        broker, topic("evt/#"), topic("status"), persistent=True, client_id="outage-subscriber"
    )
    rig = make_rig(tmp_path / "state", broker_config(broker))
    rig.uplink.start()
    total = 5000
    rng = random.Random(20260101)

    def produce() -> None:
        for start in range(0, total, 10):
            batch = []
            for seq in range(start + 1, start + 11):
                alarm = seq % ALARM_EVERY == 0
                batch.append(
                    draft(
                        "alarm.raised" if alarm else "access.granted",
                        "alarm" if alarm else "info",
                        n=seq,
                    )
                )
            rig.emit(*batch)
            time.sleep(0.008)

    def births() -> int:
        # Live publishes arrive with retain=False; a retained copy replayed when the
        # recorder re-subscribes has retain=True and is not a new birth.
        return sum(1 for m in rec.on(topic("status")) if b'"online"' in m.payload and not m.retain)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        for _ in range(5):
            # Each restart hits a connected agent at a random moment of its traffic.
            wait_until(lambda: rig.uplink.state == "connected", 10, "reconnected")
            time.sleep(rng.uniform(0.2, 0.9))
            before = births()
            broker.restart(graceful=True)
            # A new birth follows every restart.
            rec.wait_for(lambda b=before: births() > b, 20, "a birth after the restart")
        producer.join(60)
        wait_until(lambda: rig.outbox.stats().unsent == 0, 60, "outbox fully sent")
        rec.wait_for(
            lambda: len({m.payload for m in rec.snapshot() if "/evt/" in m.topic}) >= total,
            30,
            "every seq at the subscriber",
        )
        stats = rig.uplink.stats()
    finally:
        producer.join(60)
        rig.close()
    events = _parse([m for m in rec.snapshot() if "/evt/" in m.topic])
    assert {seq for seq, _ in events} == set(range(1, total + 1))
    assert_first_arrivals_in_seq_order(events)
    assert births() >= 6  # start + every restart
    assert stats["reconnects"] >= 5


def test_20000_event_backlog_drains_in_order_and_a_new_alarm_overtakes_it(
    tmp_path, make_broker, recorder
):
    broker = make_broker(tls=False)
    rec = recorder(broker, topic("evt/#"))
    # An alarm console subscribes to alarms only, so its queue at the broker is not
    # behind the backlog that `rec` is still digesting.
    console = recorder(broker, topic("evt/alarm"))
    rate = 4000
    rig = make_rig(tmp_path / "state", broker_config(broker, drain_per_s=rate))
    backlog = 20_000
    for _ in range(backlog // 1000):  # offline: committed, nobody notified
        rig.outbox.append_batch([draft("env.reading", voc_ppb=1) for _ in range(1000)])
    rig.uplink.start()
    try:
        rec.wait_for(lambda: len(rec.messages) >= 4000, 30, "drain under way")
        sent_at = time.monotonic()
        (alarm,) = rig.emit(draft("alarm.raised", "alarm", alarm="a-1", kind="leak"))
        console.wait_for(lambda: len(console.messages) == 1, 5, "the alarm")
        assert console.messages[0].at - sent_at < 1.0
        assert json.loads(console.messages[0].payload)["seq"] == alarm.seq
        assert rig.outbox.stats().unsent > 1000  # it really overtook the backlog
        rec.wait_for(lambda: len(rec.messages) >= backlog + 1, 60, "the whole backlog")
        wait_until(lambda: rig.outbox.stats().unsent == 0, 10, "all marked sent")
    finally:
        rig.close()
    messages = rec.snapshot()
    events = _parse(messages)
    assert sorted(seq for seq, _ in events) == list(range(1, backlog + 2))
    assert_first_arrivals_in_seq_order(events)
    drain = [m.at for m, (_, sev) in zip(messages, events, strict=True) if sev != "alarm"]
    measured = (len(drain) - 1) / (drain[-1] - drain[0])
    print(f"drain rate {measured:.0f} events/s (bound {rate}/s)")
    assert measured < rate * 1.15  # rate-bounded so live traffic keeps flowing
