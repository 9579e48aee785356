"""`python -m bench.breakdown [decisions]`: where a decision's time goes, above the flush.

Runs the decision benchmark (second badge -> relay) and timestamps, for the second
badge of each decision: `Core.post` (the driver hands it over), the core starting to
step it (the core thread woke up), the outbox append starting (the rules are done) and
ending (sealed and committed, fsync included). The relay moves right after. Printed
as p50 / p99 per stage, next to the same run's bare page flush.
"""

from __future__ import annotations

import argparse
import bisect
import logging
import time
from collections.abc import Callable
from typing import Any

import structlog

import bench.latency
from agent.core import Core
from agent.outbox import Outbox
from bench.broker import BenchBroker
from bench.stats import ms, percentile


def _timed(marks: dict[str, list[float]], name: str, inner: Callable[..., Any]) -> Any:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        marks[f"{name}_in"].append(time.perf_counter())
        result = inner(self, *args, **kwargs)
        marks[f"{name}_out"].append(time.perf_counter())
        return result

    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__)
    parser.add_argument("decisions", nargs="?", type=int, default=400)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    marks: dict[str, list[float]] = {k: [] for k in ("post", "step", "append_in", "append_out")}
    post, step, append = Core.post, Core._step, Outbox.append_batch

    def posted(self: Core, item: Any) -> None:
        if getattr(item, "reader", None) == "B":
            marks["post"].append(time.perf_counter())
        post(self, item)

    def stepped(self: Core, item: Any) -> None:
        if getattr(item, "reader", None) == "B":
            marks["step"].append(time.perf_counter())
        step(self, item)

    try:
        Core.post, Core._step = posted, stepped  # type: ignore[method-assign]
        Outbox.append_batch = _timed(marks, "append", append)  # type: ignore[method-assign]
        with BenchBroker() as broker:
            decisions, flushes = bench.latency.decision_latencies(broker.url, args.decisions)
    finally:
        Core.post, Core._step, Outbox.append_batch = post, step, append  # type: ignore[method-assign]
    stages: dict[str, list[float]] = {"wake": [], "rules": [], "seal+commit": []}
    for at_post, at_step in zip(marks["post"], marks["step"], strict=True):
        i = bisect.bisect_left(marks["append_in"], at_step)
        stages["wake"].append(at_step - at_post)
        stages["rules"].append(marks["append_in"][i] - at_step)
        stages["seal+commit"].append(marks["append_out"][i] - marks["append_in"][i])
    stages["decision"], stages["bare flush"] = decisions, flushes
    print("stage         p50 ms   p99 ms")
    for name, values in stages.items():
        print(f"{name:12} {ms(percentile(values, 50)):7}  {ms(percentile(values, 99)):7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
