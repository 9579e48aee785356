"""`python -m bench [name ...] [--quick]`: one JSON object per line per benchmark, then a table.

Every benchmark gets the same private mosquitto, and every throughput or latency is
also given as a ratio to bare paho measured against that broker in the same run, so
figures from a shared, noisy machine stay comparable. A benchmark that fails prints
`{"name": ..., "error": ...}` and the exit code is 1; the others still run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from bench.broker import BenchBroker
from bench.central_ingest import bench_central_ingest_postgres, bench_central_ingest_sqlite
from bench.drain import bench_drain
from bench.footprint import bench_footprint
from bench.latency import bench_alarm_latency, bench_decision
from bench.pipeline import bench_pipeline
from bench.stats import table

Bench = Callable[[int, str, bool], dict[str, Any]]
BENCHMARKS: dict[str, Bench] = {
    "pipeline": bench_pipeline,
    "alarm_latency": bench_alarm_latency,
    "decision": bench_decision,
    "drain": bench_drain,
    "footprint": bench_footprint,
    "central_ingest_sqlite": bench_central_ingest_sqlite,
    "central_ingest_postgres": bench_central_ingest_postgres,
}


def machine() -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load1": round(load1, 2),
        "load5": round(load5, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="CI sizes (< 3 min in all)")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    # The agent logs every alarm and output; at benchmark rates that is noise (and cost
    # the daemon would not pay at INFO in journald either way: it is measured there).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    results: list[dict[str, Any]] = []
    ok = True
    started = time.monotonic()
    with BenchBroker() as broker:
        for name in names:
            t0 = time.monotonic()
            try:
                result = BENCHMARKS[name](broker.port, broker.url, args.quick)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                result = {"name": name, "error": f"{type(exc).__name__}: {exc}"}
                ok = False
            result["seconds"] = round(time.monotonic() - t0, 1)
            result["quick"] = args.quick
            result["machine"] = machine()
            results.append(result)
            print(json.dumps(result, ensure_ascii=False), flush=True)
    print()
    mode = "--quick" if args.quick else "full"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"cabinet-agent bench ({mode}, {stamp}, {time.monotonic() - started:.0f} s)")
    print(table(results))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
