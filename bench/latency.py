"""Latency of what matters at the cabinet: an alarm reaching the broker, a lock decision.

alarm_latency: a leak input posted to the live core -> `alarm.raised` committed, signed
and PUBACKed, one at a time at a low rate; divided by bare paho publish -> PUBACK at
the same rate in the same run. (Leak, not VOC: the VOC alarm waits `voc_hold_s` = 10 s
by policy before it is raised, which would measure the policy, not the agent.)

decision: the second badge posted to the core -> the lock relay output applied. That
includes the commit (fsync) of `access.granted` and `lock.unlocked`, because the
write-ahead rule forbids the relay to move before its record is durable.

Both therefore sit on top of a floor no code can go under: one flush of the disk (the
commit's fdatasync), plus, for the alarm, one bare publish -> PUBACK. Each benchmark
measures that floor in the same run at the same point of its cycle (`FsyncProbe`), and
reports how far above it the agent is (`floor_ratio`) next to the issue's own figures.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from agent.clock import SystemClock
from agent.wire import Envelope, event_topic
from bench.raw import FsyncProbe, RawClient
from bench.rig import DEVICE, SITE, WINDOW, make_agent
from bench.stats import ms, percentile
from rules.effects import Instant, OutputName
from rules.inputs import Badge, LeakChanged, Tick

TIMEOUT_S = 10.0
GAP_S = 0.001  # between two alarms: "low rate", the machine otherwise quiet
KEEPER_CARD, USER_CARD = "04A1B2C3D4E5F6", "04FFEEDDCCBBAA"  # examples/policy.toml
UNLOCK_S = 10  # the example policy's unlock window


class JumpClock:
    """The system clock plus an offset the benchmark can jump forward, so a 10 s unlock
    window ends at once instead of costing 10 s of wall time per trial."""

    def __init__(self) -> None:
        self._base = SystemClock()
        self._offset_ms = 0

    def jump(self, ms_: int) -> None:
        self._offset_ms += ms_

    def now(self) -> Instant:
        now = self._base.now()
        return Instant(now.wall_ms + self._offset_ms, now.mono_ms + self._offset_ms)

    def seconds_until(self, mono_ms: int) -> float:
        return max(0.0, (mono_ms - self.now().mono_ms) / 1000)


def _by_type(events: queue.SimpleQueue[Envelope], wanted: str) -> Envelope:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        env = events.get(timeout=max(0.0, deadline - time.monotonic()))
        if env.type == wanted:
            return env


def alarm_latencies(
    broker_port: int, broker_url: str, count: int
) -> tuple[list[float], list[float], list[float], int]:
    """Post a leak -> PUBACK of its alarm.raised, and bare paho publish -> PUBACK of a
    message of the same size right after each: both see the same moment of the machine.
    Then a bare page flush, as long after the raw publish as the alarm's commit comes
    after the previous one. Returns (agent, raw, flush seconds, payload size)."""
    agent = make_agent(broker_url)
    raw = RawClient(broker_port, WINDOW)
    probe = FsyncProbe(agent.state_dir)
    topic = event_topic("cabinet", SITE, DEVICE, "alarm.raised")
    try:
        agent.probe.record_all = True
        events: queue.SimpleQueue[Envelope] = queue.SimpleQueue()

        def committed(envelopes: list[Envelope]) -> None:
            for envelope in envelopes:
                events.put(envelope)

        agent.on_commit.append(committed)
        core = agent.start_core()
        out: list[float] = []
        raw_out: list[float] = []
        flush_out: list[float] = []
        size = 0
        for _ in range(count):
            t0 = time.perf_counter()
            core.post(LeakChanged(True))
            raised = _by_type(events, "alarm.raised")
            out.append(agent.probe.wait(raised.seq, TIMEOUT_S) - t0)
            size = len(raised.payload)
            core.post(LeakChanged(False))
            cleared = _by_type(events, "alarm.cleared")
            agent.probe.wait(cleared.seq, TIMEOUT_S)
            time.sleep(GAP_S)
            raw_out.append(raw.puback_latency(topic, b"x" * size))
            time.sleep(GAP_S)
            flush_out.append(probe.latency())
            time.sleep(GAP_S)
        return out, raw_out, flush_out, size
    finally:
        probe.close()
        raw.close()
        agent.close()


def bench_alarm_latency(broker_port: int, broker_url: str, quick: bool) -> dict[str, Any]:
    count = 1000 if quick else 3000
    agent, raw, flush, size = alarm_latencies(broker_port, broker_url, count)
    p99, raw_p99 = percentile(agent, 99), percentile(raw, 99)
    # The floor of a durable alarm: a flush and a bare publish, paired by cycle.
    floor = [f + r for f, r in zip(flush, raw, strict=True)]
    return {
        "name": "alarm_latency",
        "ratio": round(p99 / raw_p99, 2),
        "p50_ms": ms(percentile(agent, 50)),
        "p99_ms": ms(p99),
        "raw_p99_ms": ms(raw_p99),
        "raw_p50_ms": ms(percentile(raw, 50)),
        "p50_ratio": round(percentile(agent, 50) / percentile(raw, 50), 2),
        "max_ms": ms(max(agent)),
        "fsync_p50_ms": ms(percentile(flush, 50)),
        "fsync_p99_ms": ms(percentile(flush, 99)),
        "floor_p99_ms": ms(percentile(floor, 99)),
        "floor_ratio": round(p99 / percentile(floor, 99), 2),
        "alarms": count,
        "payload_bytes": size,
    }


def decision_latencies(broker_url: str, count: int) -> tuple[list[float], list[float]]:
    """Second badge -> relay, and a bare page flush in the same position of the cycle:
    right after another flush (the first badge's commit), after the same quiet gap.
    Returns (decision, flush seconds)."""
    agent = make_agent(broker_url)
    probe = FsyncProbe(agent.state_dir)
    try:
        clock = JumpClock()
        lock_changes: queue.SimpleQueue[tuple[bool, float]] = queue.SimpleQueue()
        pending = threading.Event()

        def output(name: OutputName, on: bool) -> None:
            if name == "lock":
                lock_changes.put((on, time.perf_counter()))

        def committed(envs: list[Envelope]) -> None:
            if any(e.type == "access.pending" for e in envs):
                pending.set()

        agent.on_output.append(output)
        agent.on_commit.append(committed)
        core = agent.start_core(clock)
        while not lock_changes.empty():
            lock_changes.get()  # the fail-secure "all off" of system.started
        out: list[float] = []
        flush_out: list[float] = []
        for _ in range(count):
            probe.latency()  # stands for the first badge's commit
            flush_out.append(probe.latency())  # for the second's
            time.sleep(GAP_S)
            pending.clear()
            core.post(Badge("A", KEEPER_CARD))
            if not pending.wait(TIMEOUT_S):
                raise TimeoutError("the first badge was not recorded as pending")
            t0 = time.perf_counter()
            core.post(Badge("B", USER_CARD))
            on, t1 = lock_changes.get(timeout=TIMEOUT_S)
            if not on:
                raise RuntimeError("the lock output went off instead of on")
            out.append(t1 - t0)
            # Nobody opens the door: let the unlock window lapse (lock.locked, relay off).
            clock.jump(UNLOCK_S * 1000 + 1)
            core.post(Tick())
            on, _ = lock_changes.get(timeout=TIMEOUT_S)
            if on:
                raise RuntimeError("the lock output did not go off after the unlock window")
            time.sleep(GAP_S)
        return out, flush_out
    finally:
        probe.close()
        agent.close()


def bench_decision(broker_port: int, broker_url: str, quick: bool) -> dict[str, Any]:
    count = 500 if quick else 3000
    values, flush = decision_latencies(broker_url, count)
    return {
        "name": "decision",
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values)),
        "fsync_p50_ms": ms(percentile(flush, 50)),
        "fsync_p99_ms": ms(percentile(flush, 99)),
        "floor_ratio": round(percentile(values, 99) / percentile(flush, 99), 2),
        "decisions": count,
    }
