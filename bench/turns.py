"""`python -m bench.turns [rounds]`: what the core/uplink turn-taking buys, A/B.

Two measures keep the uplink thread from taking the interpreter in the middle of a lock
decision or an alarm (docs/decisions.md, "Signing without releasing the GIL"): signing
that holds the GIL (agent.seal) and the uplink deferring to a busy core
(Uplink.defer_to). Each is switched off in turn and the four variants are interleaved,
round after round, in one process against one broker, so all see the same moments of
a shared machine. The signer is switched off the only way it can be from outside: by
making `agent.seal` find no GIL-holding signer, as on a PyNaCl build without one.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

import structlog

import agent.seal
import bench.latency
import bench.rig
from bench.broker import BenchBroker
from bench.stats import ms, percentile

VARIANTS = ("neither", "signer", "turns", "both")


def _none(secret: bytes) -> Callable[[bytes], bytes] | None:
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turns", description=__doc__)
    parser.add_argument("rounds", nargs="?", type=int, default=8)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    signer = agent.seal._gil_holding_signer
    make_agent = bench.rig.make_agent
    samples = {v: {"decision": list[float](), "alarm": list[float]()} for v in VARIANTS}
    try:
        with BenchBroker() as broker:
            for _ in range(args.rounds):
                for variant in VARIANTS:
                    holds = variant in ("signer", "both")
                    turns = variant in ("turns", "both")
                    setattr(agent.seal, "_gil_holding_signer", signer if holds else _none)  # noqa: B010

                    def configured(url: str, _turns: bool = turns) -> bench.rig.Agent:
                        made = make_agent(url)
                        made.defer = _turns
                        return made

                    setattr(bench.latency, "make_agent", configured)  # noqa: B010
                    decisions, _ = bench.latency.decision_latencies(broker.url, 200)
                    alarms, _, _, _ = bench.latency.alarm_latencies(broker.port, broker.url, 150)
                    samples[variant]["decision"] += decisions
                    samples[variant]["alarm"] += alarms
    finally:
        setattr(agent.seal, "_gil_holding_signer", signer)  # noqa: B010
        setattr(bench.latency, "make_agent", make_agent)  # noqa: B010
    print("variant   decision p50/p99 ms   alarm p50/p99 ms")
    for variant in VARIANTS:
        d, a = samples[variant]["decision"], samples[variant]["alarm"]
        print(
            f"{variant:8}  {ms(percentile(d, 50)):6} / {ms(percentile(d, 99)):6}"
            f"     {ms(percentile(a, 50)):6} / {ms(percentile(a, 99)):6}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
