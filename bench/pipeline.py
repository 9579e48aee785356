"""Pipeline: sign + durable append + QoS 1 publish + mark sent, end to end, per second.

A producer thread does what the core does after its rules have spoken: it appends a
batch of drafts (one transaction, synchronous=FULL) and notifies the uplink. It keeps
at most `AHEAD` events unacknowledged, so this measures the steady live path and not
a backlog drain (that is `drain`). The clock stops when every event is PUBACKed *and*
marked sent in the outbox.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from agent.outbox import Draft
from agent.seal import Sealer
from agent.wire import GENESIS_PREV, SigningKey, event_topic
from bench.raw import process_cpu_s, raw_throughput
from bench.rig import DEVICE, SITE, WINDOW, make_agent, wait_until

BATCH = 64  # drafts per commit, as the core batches inputs that arrived meanwhile
AHEAD = 16 * WINDOW  # producer lead over the PUBACKs: a few windows, not a backlog
EVENT_TYPE = "access.denied"


def sample_drafts(n: int, start: int = 0) -> list[Draft]:
    """Drafts shaped like a real access.denied (≈ 330-byte envelopes)."""
    now = time.time_ns() // 1_000_000
    return [
        Draft(
            EVENT_TYPE,
            "warning",
            {"reason": "unknown_card", "reader": "A", "uid": "04A1…F6", "n": start + k},
            now,
            start + k,
            True,
        )
        for k in range(n)
    ]


def sample_envelope_payload() -> bytes:
    """The bytes the agent would publish for one sample draft (for the raw baseline)."""
    sealer = Sealer(DEVICE, 1, SigningKey.generate())
    return sealer.seal(sample_drafts(1, 99_999)[0], 99_999, GENESIS_PREV).payload


def run_pipeline(broker_url: str, events: int) -> dict[str, Any]:
    agent = make_agent(broker_url)
    failure: list[BaseException] = []
    try:
        base = agent.outbox.last_seq
        payload_len = 0
        probe = agent.probe
        acked_before = probe.events_acked

        def produce() -> None:
            nonlocal payload_len
            try:
                made = 0
                while made < events:
                    n = min(BATCH, events - made)
                    envelopes = agent.outbox.append_batch(sample_drafts(n, made))
                    payload_len = len(envelopes[-1].payload)
                    agent.committed(envelopes)
                    made += n
                    probe.wait_count(acked_before + made - AHEAD, 60)
            except BaseException as exc:  # reported by the caller, not lost in a thread
                failure.append(exc)

        cpu = process_cpu_s()
        started = time.perf_counter()
        producer = threading.Thread(target=produce, name="bench-producer", daemon=True)
        producer.start()
        probe.wait_count(acked_before + events, events / 200 + 60, abort=lambda: bool(failure))
        if failure:
            raise failure[0]
        wait_until(lambda: agent.outbox.stats().unsent == 0, 30, "every event marked sent")
        seconds = time.perf_counter() - started
        cpu = process_cpu_s() - cpu
        producer.join(5)
        assert agent.outbox.last_seq == base + events
        return {"events": events, "seconds": seconds, "cpu_s": cpu, "payload_bytes": payload_len}
    finally:
        agent.close()


def bench_pipeline(broker_port: int, broker_url: str, quick: bool) -> dict[str, Any]:
    rounds, events = (1, 20_000) if quick else (3, 60_000)
    topic = event_topic("cabinet", SITE, DEVICE, EVENT_TYPE)
    payload = b"x" * len(sample_envelope_payload())
    run_pipeline(broker_url, 2_000)  # warm-up: imports, first connection, SQLite cache
    samples = []
    for _ in range(rounds):
        # Raw right before and right after the agent: the machine is shared, and other
        # work comes and goes; each round's ratio compares like with like.
        before = raw_throughput(broker_port, topic, payload, WINDOW, 2.0)
        agent = run_pipeline(broker_url, events)
        after = raw_throughput(broker_port, topic, payload, WINDOW, 2.0)
        raw_per_s = (before.msgs + after.msgs) / (before.seconds + after.seconds)
        raw_cpu = (before.cpu_s + after.cpu_s) / (before.msgs + after.msgs)
        events_per_s = events / agent["seconds"]
        samples.append((events_per_s / raw_per_s, events_per_s, raw_per_s, agent, raw_cpu))
    ratio, events_per_s, raw_per_s, agent, raw_cpu = sorted(samples)[len(samples) // 2]
    cpu = agent["cpu_s"] / events
    return {
        "name": "pipeline",
        "ratio": round(ratio, 3),
        "events_per_s": round(events_per_s),
        "raw_per_s": round(raw_per_s),
        "ratios": [round(s[0], 3) for s in samples],
        # CPU of this process per event vs per raw message: steadier than rates when
        # other work shares the cores, since it counts only what we spend.
        "cpu_us_per_event": round(cpu * 1e6, 1),
        "raw_cpu_us_per_msg": round(raw_cpu * 1e6, 1),
        "events": events,
        "payload_bytes": agent["payload_bytes"],
        "window": WINDOW,
        "batch": BATCH,
    }
