"""`python -m bench.seal [rounds]`: what sealing an envelope costs, and what the splice buys.

`wire.build_envelope` (shipped) encodes the envelope once and splices `sig` into the
signed message; the straightforward way encodes it a second time with `sig`. Both are
timed on the same drafts (shaped like a real `access.denied`), interleaved round after
round in one process, so both see the same moments of a shared machine. Figures are
CPU microseconds per envelope (median and best round).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from agent import wire
from agent.seal import Draft
from bench.pipeline import sample_drafts

KEY = wire.SigningKey.from_seed(bytes(range(32)))
Seal = Callable[[Draft, int, str], bytes]


def shipped(draft: Draft, seq: int, prev: str) -> bytes:
    return wire.build_envelope(
        device="cab-chem-0042", boot=1, seq=seq, ts=draft.ts, mono=draft.mono,
        clock_ok=draft.clock_ok, type=draft.type, sev=draft.sev, data=draft.data,
        prev=prev, key=KEY,
    ).payload  # fmt: skip


def encoded_twice(draft: Draft, seq: int, prev: str) -> bytes:
    unsigned = {
        "v": 1, "device": "cab-chem-0042", "boot": 1, "seq": seq, "ts": draft.ts,
        "mono": draft.mono, "clock_ok": draft.clock_ok, "type": draft.type,
        "sev": draft.sev, "data": dict(draft.data), "prev": prev,
    }  # fmt: skip
    wire.reject_floats(unsigned["data"], "data")
    return wire.canonical(wire.sign_document(unsigned, KEY))


VARIANTS: dict[str, Seal] = {"splice (shipped)": shipped, "encode twice": encoded_twice}


def per_envelope_us(seal: Seal, drafts: list[Draft]) -> float:
    started = time.process_time()
    prev = wire.GENESIS_PREV
    for seq, draft in enumerate(drafts, start=1):
        prev = wire.chain_hash(seal(draft, seq, prev))
    return (time.process_time() - started) / len(drafts) * 1e6


def measure(rounds: int, size: int = 2000) -> dict[str, list[float]]:
    drafts = sample_drafts(size)
    assert shipped(drafts[0], 1, "p") == encoded_twice(drafts[0], 1, "p")  # same bytes
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, seal in VARIANTS.items():
            samples[name].append(per_envelope_us(seal, drafts))
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seal", description=__doc__)
    parser.add_argument("rounds", nargs="?", type=int, default=10)
    args = parser.parse_args(argv)
    print("variant            µs/envelope median   best")
    for name, values in measure(args.rounds).items():
        print(f"{name:18} {statistics.median(values):10.1f}   {min(values):8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
