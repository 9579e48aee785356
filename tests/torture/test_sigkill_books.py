"""The cabinet remembers (docs/rules.md): SIGKILL the real agent at random moments of
withdrawals, returns and a container's removal and return, and start it again.

After every kill the record (the outbox, each envelope's signature and chain checked)
must agree with an independent fold of itself: every `book_mg` is the fold of the
amounts before it across all boots, no alarm is raised twice for one condition nor under
one alarm id, a `mass_unexplained` is only ever measured against the books the record
implies and only when the scale is outside tolerance of them (so none is raised when the
scales match the books). After every restart, once the agent has looked at the world
again, and at the end after a clean run, no alarm is open whose condition is gone. 20
kills in CI, 1,000 with --long.
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
# After a restart the agent reconciles within a settle period or two (0.25-0.5 s real at
# SPEED); the margin is for a loaded CI machine, the wait ends as soon as it holds.
SETTLE_WITHIN_S = 15


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
    alarms = AlarmIds(fold)
    for kill in range(kills):
        agent = Agent(config, scene, speed=SPEED)
        if agent.wait_ready(60):
            if kill:  # a restart: it must let go of what the world no longer shows
                _settles_to_the_world(state, key, fold, alarms, f"seed {seed}, restart {kill}")
            time.sleep(rng.uniform(0.0, 3.0))
        agent.kill()
        if (state / "outbox.db").exists():
            _fold(state, key, fold, alarms, f"seed {seed}, after kill {kill + 1}")
    # A clean run to the end of a short scene: the world settles, every check is due.
    short = tmp_path / "short.jsonl"
    short.write_text(books_load(20))
    last = Agent(config, short, speed=SPEED, exit_after=1)
    assert last.proc.wait(120) == 0, last.tail()
    record = _record(state, key)
    fold.feed(record, f"seed {seed}, after the clean run")
    alarms.feed(record, f"seed {seed}, after the clean run")
    kinds = Counter(e["type"] for e in record)
    resumed = sum(e["data"].get("reason") == "restart" for e in record)
    print(f"{dict(sorted(kinds.items()))}; sessions ended by a restart: {resumed}")
    assert kinds["inventory.withdrawal"] >= kills // 4, "no real load"
    world = json.loads((state / "sim-cabinet.json").read_text())
    gone = _open_whose_condition_is_gone(fold, world)
    assert not gone, f"seed {seed}, after the clean run: {gone}"


def _record(state: Path, key: VerifyKey) -> list[dict]:
    events = [json.loads(payload) for payload, _ in read_outbox(state).values()]
    report = verify_chain(events, key)
    assert report.ok, report.failures[:5]
    return events


class AlarmIds:
    """Per restart: every alarm id is raised once, and a `mass_unexplained` only when the
    scale is outside tolerance of the books (Fold checks its expected_mg is the books)."""

    def __init__(self, fold: Fold) -> None:
        self.fold = fold
        self.raised: dict[str, int] = {}
        self.seq = 0

    def feed(self, events: list[dict], where: str) -> None:
        for event in events:
            if event["seq"] <= self.seq:
                continue
            self.seq = event["seq"]
            if event["type"] != "alarm.raised":
                continue
            data, at = event["data"], f"{where}, seq {event['seq']}"
            first = self.raised.setdefault(data["alarm"], event["seq"])
            assert first == event["seq"], (
                f"{at}: alarm id {data['alarm']} already raised at {first}"
            )
            if data["kind"] == "mass_unexplained":
                allowed = _tolerance(self.fold, data["container"])
                gap = abs(data["measured_mg"] - data["expected_mg"])
                assert gap > allowed, f"{at}: mass_unexplained within tolerance ({gap} mg)"


def _fold(state: Path, key: VerifyKey, fold: Fold, alarms: AlarmIds, where: str) -> None:
    record = _record(state, key)
    fold.feed(record, where)
    alarms.feed(record, where)


def _settles_to_the_world(
    state: Path, key: VerifyKey, fold: Fold, alarms: AlarmIds, where: str
) -> None:
    """The restarted agent's record, once it has reconciled (a settle period or two of
    scene time), shows no alarm open whose condition the world no longer has."""
    deadline = time.monotonic() + SETTLE_WITHIN_S
    while True:
        _fold(state, key, fold, alarms, where)
        world = json.loads((state / "sim-cabinet.json").read_text())
        gone = _open_whose_condition_is_gone(fold, world)
        if not gone:
            return
        assert time.monotonic() < deadline, f"{where}: still open after {SETTLE_WITHIN_S} s: {gone}"
        time.sleep(0.05)  # polling the outbox: it has no notification


def _tolerance(fold: Fold, container: str) -> int:
    """The rules' tolerance for a container: the larger of the absolute and relative one."""
    inventory = fold.policy.inventory
    return max(inventory.tolerance_mg, fold.books[container] * inventory.tolerance_pct // 100)


def _open_whose_condition_is_gone(fold: Fold, world: dict) -> list[str]:
    gone = []
    for alarm, about in fold.open_alarms.items():
        kind = about[0]
        if kind in ("door_forced", "door_held_open") and not world["door_open"]:
            gone.append(f"{alarm} {kind} open while the door is shut")
        if kind == "mass_unexplained":
            container, slot = str(about[2]), str(about[1])
            gap = abs(world["weights"][slot] - fold.expected_gross(container))
            if gap <= _tolerance(fold, container):
                gone.append(f"{alarm} open while the scale matches the books ({gap} mg)")
    return gone


def test_sigkill_at_20_random_moments_keeps_the_books_and_the_alarms(tmp_path, make_broker):
    kill_during_sessions(tmp_path, make_broker(tls=False), kills=20, seed=seed())


@pytest.mark.long
def test_sigkill_at_1000_random_moments_keeps_the_books_and_the_alarms(tmp_path, make_broker):
    kill_during_sessions(tmp_path, make_broker(tls=False), kills=1000, seed=seed())
