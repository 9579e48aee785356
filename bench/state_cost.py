"""What the durable rule state costs (docs/decisions.md, "Durable rule state").

Per commit: serialising the state (rules.durable.to_state + canonical JSON) and the
extra row written in the same transaction, measured as append_batch with and without
it on a real disk. At start: opening a 30-day outbox and restoring the rules from the
state, against what re-folding that record would have to read.

    python -m bench.state_cost [--days 30] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agent.core import StateEncoder, saved_state
from agent.outbox import Draft, Outbox
from agent.wire import SigningKey, canonical
from config.loading import load_model
from config.policy import Policy
from rules import durable
from rules import inputs as i
from rules.cabinet import CabinetRules
from rules.effects import Instant

ROOT = Path(__file__).resolve().parents[1]
# A busy cabinet's day: env.reading and heartbeat each minute, 40 sessions of ~9 events.
EVENTS_PER_DAY = 1440 * 2 + 40 * 9


def _rules() -> tuple[CabinetRules, Instant]:
    rules = CabinetRules("cab-chem-0042", "bench")
    now = Instant(1_795_338_000_000, 0)
    rules.step(i.Started("bench", 1), now)
    rules.step(i.PolicyLoaded(load_model(Policy, ROOT / "examples" / "policy.toml")), now)
    rules.step(i.LeakChanged(True), now)  # an open alarm or two, as in real life
    rules.step(i.DoorChanged(True), now)
    return rules, now


def per_commit(directory: Path, commits: int) -> dict[str, float]:
    rules, now = _rules()
    serialise = []
    encoder = StateEncoder()
    for _ in range(commits):
        t0 = time.perf_counter_ns()
        parts = encoder.encode(rules, now)
        serialise.append(time.perf_counter_ns() - t0)
    whole = canonical(durable.to_state(rules, now))
    key = SigningKey.generate()
    result = {
        "state_bytes_whole": float(len(whole)),
        "state_bytes_per_commit": float(len(parts["rules_state"])),
        "encode_us_median": statistics.median(serialise) / 1000,
    }
    for label, with_state in (("commit_without_state", False), ("commit_with_state", True)):
        box = Outbox(directory / f"{label}.db", "cab-chem-0042", key)
        times = []
        for n in range(commits):
            draft = Draft("door.opened", "info", {"session": None}, now.wall_ms + n, n, True)
            # A changed state each time (the worst case: unchanged parts are not written).
            fresh = dict(parts, rules_state=parts["rules_state"] + b" " * (n % 2))
            fresh = fresh if with_state else None
            t0 = time.perf_counter_ns()
            box.append_batch([draft], state=fresh)
            times.append(time.perf_counter_ns() - t0)
        box.close()
        times.sort()
        result[f"{label}_ms_median"] = statistics.median(times) / 1e6
        result[f"{label}_ms_p99"] = times[int(len(times) * 0.99)] / 1e6
    return result


def at_start(directory: Path, days: int) -> dict[str, float]:
    rules, now = _rules()
    key = SigningKey.generate()
    path = directory / "month.db"
    box = Outbox(path, "cab-chem-0042", key)
    state = StateEncoder().encode(rules, now)
    events = days * EVENTS_PER_DAY
    batch = [Draft("env.reading", "info", {"voc_ppb": 120}, now.wall_ms, 0, True)] * 500
    for _ in range(events // 500):
        box.append_batch(batch, state=state)
    box.close()
    t0 = time.perf_counter()
    box = Outbox(path, "cab-chem-0042", key)
    opened = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh = CabinetRules("cab-chem-0042", "bench")
    fresh.step(i.Started("bench", box.boot, box.resumed_from_seq, saved_state(box)), now)
    restored = time.perf_counter() - t0
    t0 = time.perf_counter()
    count = sum(1 for _ in box.range(1, box.last_seq))
    read_all = time.perf_counter() - t0
    box.close()
    return {
        "events": float(count),
        "open_ms": opened * 1000,
        "restore_ms": restored * 1000,
        "refold_read_only_ms": read_all * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for name, value in {
            **per_commit(Path(tmp), args.commits),
            **at_start(Path(tmp), args.days),
        }.items():
            print(f"{name:32} {value:10.3f}")


if __name__ == "__main__":
    main()
