"""Footprint of the real daemon (`cabinet-agent run`, simulated cabinet, this broker).

The daemon is the agent as scripts/install-pi.sh installs it on a cabinet (bench.target):
its own venv with the agent's dependencies only, run from outside the checkout.

1. start -> READY=1 (sd_notify) time; RSS one second after READY; median of 3 starts of
   a short scenario (a cabinet runs none; the soak's 600 s scenario is held in memory
   whole, ~12,000 lines, which is the simulator's cost, not the agent's);
2. soak: the `soak` scenario at ~20 events/s for 10 minutes (quick: 10 s); RSS growth;
3. idle: the scenario over, drivers still polling; CPU % of one core over 60 s (quick: 3 s);
4. fsync per event: a second run, traced, under the `burst` scenario (sustained load at
   the daemon's capacity); fsyncs of the whole process tree / events it committed.
   The soak's own ratio is reported too (`soak_fsync_per_event`): at 20 events/s every
   event is its own commit, so it is ~1 by design (each decision durable before its output).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.child import DaemonChild
from bench.target import install_agent

STARTS = 3


def _start_runs(broker_url: str, program: Path, work: Path) -> dict[str, Any]:
    scenario = scenarios.write(work, "start.jsonl", scenarios.soak(10))
    ready, rss = [], []
    for _ in range(STARTS):
        child = DaemonChild(broker_url, scenario, program=program)
        try:
            ready.append(child.wait_ready())
            time.sleep(1.0)  # let the first sensor reports and the broker connection settle
            rss.append(child.rss_mb())
            code = child.stop()
            if code != 0:
                raise RuntimeError(f"the daemon exited {code}: {child.log_tail()}")
        finally:
            child.cleanup()
    return {
        "ready_s": round(statistics.median(ready), 3),
        "rss_mb": round(statistics.median(rss), 1),
        "starts_ready_s": [round(s, 3) for s in ready],
        "starts_rss_mb": [round(m, 1) for m in rss],
    }


def _soak_run(
    broker_url: str, program: Path, soak_s: int, idle_s: int, work: Path
) -> dict[str, Any]:
    scenario = scenarios.write(work, "soak.jsonl", scenarios.soak(soak_s))
    child = DaemonChild(broker_url, scenario, strace=True, program=program)
    try:
        child.wait_ready()
        time.sleep(1.0)  # let the first sensor reports and the broker connection settle
        rss_start = child.rss_mb()
        events_start = child.events()
        soak_started = time.monotonic()
        # The scenario's clock started at spawn; its last line is at ~soak_s.
        end = soak_started + soak_s - (time.perf_counter() - child.started) + 1.0
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if child.proc.poll() is not None:
                raise RuntimeError(f"the daemon died during the soak: {child.log_tail()}")
        rss_end = child.rss_mb()
        events_end = child.events()
        soak_seconds = time.monotonic() - soak_started
        cpu_before = child.cpu_s()
        idle_started = time.monotonic()
        time.sleep(idle_s)
        idle_cpu = child.cpu_s() - cpu_before
        idle_seconds = time.monotonic() - idle_started
        events_idle = child.events()
        code = child.stop()
        if code != 0:
            raise RuntimeError(f"the daemon exited {code}: {child.log_tail()}")
        return {
            "soak_rss_start_mb": round(rss_start, 1),
            "rss_end_mb": round(rss_end, 1),
            "rss_growth_mb": round(rss_end - rss_start, 1),
            "soak_s": round(soak_seconds),
            "soak_events_per_s": round((events_end - events_start) / soak_seconds, 1),
            "idle_cpu_pct": round(100 * idle_cpu / idle_seconds, 2),
            "idle_s": round(idle_seconds),
            "idle_events": events_idle - events_end,
            "soak_fsync_per_event": round(child.fsyncs() / max(1, child.events()), 3),
        }
    finally:
        child.cleanup()


def _burst_run(broker_url: str, program: Path, inputs: int, work: Path) -> dict[str, Any]:
    scenario = scenarios.write(work, "burst.jsonl", scenarios.burst(inputs, per_ms=5))
    child = DaemonChild(broker_url, scenario, strace=True, program=program)
    try:
        child.wait_ready()
        started = time.monotonic()
        # Done when every flip is committed: one alarm event per flip (plus start-up).
        deadline = started + inputs / 200 + 60
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now_events = child.events()
            if now_events >= inputs:
                break
            if now_events != last:
                last, stable_since = now_events, time.monotonic()
            elif time.monotonic() - stable_since > 10:
                raise RuntimeError(f"the burst stalled at {now_events} events: {child.log_tail()}")
        seconds = time.monotonic() - started
        code = child.stop()
        events = child.events()
        if code != 0:
            raise RuntimeError(f"the daemon exited {code}: {child.log_tail()}")
        return {
            "fsync_per_event": round(child.fsyncs() / events, 4),
            "fsyncs": child.fsyncs(),
            "load_events": events,
            "load_events_per_s": round(events / seconds),
        }
    finally:
        child.cleanup()


def bench_footprint(broker_port: int, broker_url: str, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        work = Path(tmp)
        program = install_agent(work / "pi")
        start = _start_runs(broker_url, program, work)
        soak = _soak_run(broker_url, program, 10 if quick else 600, 3 if quick else 60, work)
        burst = _burst_run(broker_url, program, 10_000 if quick else 100_000, work)
    return {"name": "footprint", **start, **soak, **burst}
