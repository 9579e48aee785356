"""Drain: a backlog built while the broker was out of reach, published when it is back.

The backlog is committed while the uplink is not running (the outage), then the uplink
starts: drain rate = backlog / (uplink start -> last backlog event PUBACKed), divided by
bare paho's QoS 1 rate. Meanwhile a leak alarm is raised through the live core every
`ALARM_EVERY_S`; an alarm goes out within 1 s of its commit even during a drain
(docs/protocol.md), so the slowest of them (post -> PUBACK) is reported.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from agent.wire import Envelope, event_topic
from bench.pipeline import EVENT_TYPE, sample_drafts, sample_envelope_payload
from bench.raw import raw_throughput
from bench.rig import DEVICE, SITE, UNBOUNDED_DRAIN, WINDOW, Agent, make_agent, start, wait_until
from bench.stats import ms, percentile
from rules.inputs import LeakChanged

ALARM_EVERY_S = 0.2
FILL_BATCH = 1000  # rows per commit while filling: the fill is set-up, not measured


def _alarm_loop(
    agent: Agent, stop: threading.Event, results: list[float], errors: list[BaseException]
) -> None:
    """Raise and clear leak alarms until stopped; record each raise's post -> PUBACK."""
    assert agent.core is not None
    raised: queue.SimpleQueue[Envelope] = queue.SimpleQueue()

    def committed(envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            if envelope.type == "alarm.raised":
                agent.probe.watch.add(envelope.seq)  # before the uplink hears of it
                raised.put(envelope)

    agent.on_commit.append(committed)
    wet = False
    try:
        while not stop.wait(ALARM_EVERY_S / 2):
            wet = not wet
            t0 = time.perf_counter()
            agent.core.post(LeakChanged(wet))
            if wet:
                env = raised.get(timeout=10)
                results.append(agent.probe.wait(env.seq, 10) - t0)
    except BaseException as exc:  # reported by the caller
        errors.append(exc)


def run_drain(broker_url: str, backlog: int) -> dict[str, Any]:
    agent = make_agent(broker_url, start_uplink=False)
    try:
        made = 0
        while made < backlog:
            n = min(FILL_BATCH, backlog - made)
            agent.outbox.append_batch(sample_drafts(n, made))
            made += n
        last = agent.outbox.last_seq
        agent.probe.watch.add(last)
        agent.start_core()
        stop = threading.Event()
        alarms: list[float] = []
        errors: list[BaseException] = []
        raiser = threading.Thread(
            target=_alarm_loop, args=(agent, stop, alarms, errors), name="bench-alarms"
        )
        started = time.perf_counter()
        start(agent)
        raiser.start()
        probe = agent.probe
        wait_until(
            lambda: last in probe.acked or bool(errors),
            backlog / 100 + 60,
            "the backlog to drain",
        )
        seconds = probe.acked[last] - started
        stop.set()
        raiser.join(15)
        if errors:
            raise errors[0]
        return {
            "backlog": backlog,
            "seconds": seconds,
            "acked": probe.events_acked,  # the backlog and the live events since
            "alarms": alarms,
        }
    finally:
        agent.close()


def bench_drain(broker_port: int, broker_url: str, quick: bool) -> dict[str, Any]:
    backlog = 30_000 if quick else 100_000
    topic = event_topic("cabinet", SITE, DEVICE, EVENT_TYPE)
    payload = b"x" * len(sample_envelope_payload())
    raw_seconds = 4.0 if quick else 10.0
    # Raw right before and right after: the machine is shared (see pipeline).
    before = raw_throughput(broker_port, topic, payload, WINDOW, raw_seconds / 2)
    result = run_drain(broker_url, backlog)
    after = raw_throughput(broker_port, topic, payload, WINDOW, raw_seconds / 2)
    raw_per_s = (before.msgs + after.msgs) / (before.seconds + after.seconds)
    drain_per_s = result["backlog"] / result["seconds"]
    alarms: list[float] = result["alarms"]
    return {
        "name": "drain",
        "ratio": round(drain_per_s / raw_per_s, 3),
        "live_alarm_max_ms": ms(max(alarms)) if alarms else None,
        "live_alarm_p50_ms": ms(percentile(alarms, 50)) if alarms else None,
        "live_alarms": len(alarms),
        "drain_per_s": round(drain_per_s),
        "raw_per_s": round(raw_per_s),
        "drain_bound_per_s": UNBOUNDED_DRAIN,  # lifted; the shipped default is 5000/s
        "backlog": backlog,
        "events_acked": result["acked"],
    }
