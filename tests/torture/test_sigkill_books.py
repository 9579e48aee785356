"""The cabinet remembers (docs/rules.md): SIGKILL the real agent at random moments of
withdrawals, returns and a container's removal and return, and start it again.

After every kill the record (the outbox, each envelope's signature and chain checked)
must agree with an independent fold of itself: every `book_mg` is the fold of the
amounts before it across all boots, no alarm is raised twice for one condition, a
`mass_unexplained` is only ever measured against the books the record implies (so none
is raised when the scales match the books). At the end, after a clean run, no alarm is
open whose condition is gone. 20 kills in CI, 1,000 with --long.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from agent.wire import VerifyKey, verify_chain
from config.loading import load_model
from config.policy import Policy
from tests.daemon.agent_process import keygen
from tests.support.broker import Broker
from tests.torture.books import Fold, books_load
from tests.torture.harness import POLICY, Agent, read_outbox, write_config
from tests.torture.test_sigkill import seed

SPEED = 20  # a session every 0.5 s of real time


def kill_during_sessions(tmp_path: Path, broker: Broker, kills: int, seed: int) -> None:
    print(f"torture seed {seed} (TORTURE_SEED={seed} replays these kill moments)")
    rng = random.Random(seed)
    key = keygen(tmp_path)
    config = write_config(tmp_path, broker.url)
    state = tmp_path / "state"
    scene = tmp_path / "books.jsonl"
    scene.write_text(books_load(600))
    policy = load_model(Policy, POLICY)
    fold = Fold(policy)
    for kill in range(kills):
        agent = Agent(config, scene, speed=SPEED)
        if agent.wait_ready(60):
            time.sleep(rng.uniform(0.0, 3.0))
        agent.kill()
        if (state / "outbox.db").exists():
            fold.feed(_record(state, key), f"seed {seed}, after kill {kill + 1}")
    # A clean run to the end of a short scene: the world settles, every check is due.
    short = tmp_path / "short.jsonl"
    short.write_text(books_load(20))
    last = Agent(config, short, speed=SPEED, exit_after=1)
    assert last.proc.wait(120) == 0, last.tail()
    record = _record(state, key)
    fold.feed(record, f"seed {seed}, after the clean run")
    kinds = Counter(e["type"] for e in record)
    resumed = sum(e["data"].get("reason") == "restart" for e in record)
    print(f"{dict(sorted(kinds.items()))}; sessions ended by a restart: {resumed}")
    assert kinds["inventory.withdrawal"] >= kills // 4, "no real load"
    world = json.loads((state / "sim-cabinet.json").read_text())
    _nothing_open_whose_condition_is_gone(fold, world)


def _record(state: Path, key: VerifyKey) -> list[dict]:
    events = [json.loads(payload) for payload, _ in read_outbox(state).values()]
    report = verify_chain(events, key)
    assert report.ok, report.failures[:5]
    return events


def _nothing_open_whose_condition_is_gone(fold: Fold, world: dict) -> None:
    tolerance = fold.policy.inventory.tolerance_mg
    for alarm, about in fold.open_alarms.items():
        kind = about[0]
        assert kind not in ("door_forced", "door_held_open") or world["door_open"], alarm
        if kind == "mass_unexplained":
            container = str(about[2])
            slot = str(about[1])
            gap = abs(world["weights"][slot] - fold.expected_gross(container))
            assert gap > tolerance, f"{alarm} open while the scale matches the books"


def test_sigkill_at_20_random_moments_keeps_the_books_and_the_alarms(tmp_path, make_broker):
    kill_during_sessions(tmp_path, make_broker(tls=False), kills=20, seed=seed())


@pytest.mark.long
def test_sigkill_at_1000_random_moments_keeps_the_books_and_the_alarms(tmp_path, make_broker):
    kill_during_sessions(tmp_path, make_broker(tls=False), kills=1000, seed=seed())
