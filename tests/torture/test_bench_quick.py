"""`python -m bench --quick` runs (CI: under 3 minutes) and prints every figure.

No timing is asserted here: the figures depend on the machine and belong in
bench/RESULTS.md. What is checked is that every benchmark ran and reported the keys
the issue names, each with its ratio to bare paho where there is one, and the latencies
with the disk-flush floor measured in the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.realparts import require_binary
from tests.torture.harness import ROOT

KEYS = {
    "pipeline": {"ratio", "events_per_s", "raw_per_s"},
    "alarm_latency": {
        "ratio",
        "p50_ms",
        "p99_ms",
        "raw_p99_ms",
        "fsync_p99_ms",
        "floor_p99_ms",
        "floor_ratio",
    },
    "decision": {"p50_ms", "p99_ms", "fsync_p99_ms", "floor_ratio"},
    "drain": {"ratio", "live_alarm_max_ms"},
    "footprint": {"rss_mb", "rss_growth_mb", "idle_cpu_pct", "ready_s", "fsync_per_event"},
    "central_ingest_sqlite": {"ratio", "events_per_s", "raw_per_s", "alarm_p99_ms"},
    "central_ingest_postgres": {"ratio", "events_per_s", "raw_per_s", "alarm_p99_ms"},
}


def run_bench(module: str, *args: str, timeout_s: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_bench_quick_reports_every_benchmark_as_json_then_a_table() -> None:
    require_binary("mosquitto", "mosquitto")
    require_binary("strace", "strace")
    done = run_bench("bench", "--quick", timeout_s=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    by_name = {result["name"]: result for result in results}
    assert list(by_name) == list(KEYS), "one JSON line per benchmark, in order"
    for name, keys in KEYS.items():
        missing = keys - by_name[name].keys()
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert all(isinstance(by_name[name][k], int | float) for k in keys), by_name[name]
    assert "benchmark" in done.stdout and "ratio" in done.stdout, "the human table"


def test_bench_seal_times_both_ways_of_making_the_same_envelope_bytes() -> None:
    from bench.seal import measure

    samples = measure(rounds=1, size=50)  # asserts that both ways give the same bytes
    assert set(samples) == {"splice (shipped)", "encode twice"}
    assert all(len(values) == 1 and values[0] > 0 for values in samples.values())


def test_bench_breakdown_names_every_stage_of_a_decision() -> None:
    require_binary("mosquitto", "mosquitto")
    done = run_bench("bench.breakdown", "20", timeout_s=120)
    assert done.returncode == 0, done.stderr[-3000:]
    stages = [line.split()[0] for line in done.stdout.splitlines()[1:]]
    assert stages == ["wake", "rules", "seal+commit", "decision", "bare"]
