"""Power cut at any instant: SIGKILL the running agent at random moments.

The agent runs the simulated cabinet under steady load against a real mosquitto while a
subscriber records what is published. It is killed at a random moment of its life —
sometimes while still starting, mostly while busy — and started again, 30 times in CI
(1,000 with --long). After every kill the outbox must hold seqs 1..N with no gap, and
everything delivered must be byte-identical to the record (no seq reused). At the end
a clean run publishes the rest: every seq is delivered, and the union of outbox and
deliveries verifies as one chain.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.daemon.agent_process import keygen
from tests.support.broker import Broker
from tests.support.fixtures import Recorder
from tests.torture.harness import (
    Agent,
    Deliveries,
    Ledger,
    read_outbox,
    short_scene,
    steady_load,
    write_config,
)

SPEED = 20  # scenario seconds per second: ~220 events/s
EARLY_KILLS = 0.25  # share of kills aimed at start-up (before READY, maybe mid-import)


def kill_at_random(tmp_path: Path, broker: Broker, kills: int, seed: int) -> None:
    print(f"torture seed {seed} (TORTURE_SEED={seed} replays these kill moments)")
    rng = random.Random(seed)
    recorder = Recorder(broker, "cabinet/#").start()
    deliveries = Deliveries(recorder.snapshot)
    key = keygen(tmp_path)  # provisioned up front: every run signs with it
    config = write_config(tmp_path, broker.url)
    state = tmp_path / "state"
    load = tmp_path / "steady.jsonl"
    load.write_text(steady_load(600))
    for kill in range(kills):
        agent = Agent(config, load, speed=SPEED)
        if rng.random() < EARLY_KILLS:
            time.sleep(rng.uniform(0.0, 0.6))
        elif agent.wait_ready(60):
            time.sleep(rng.uniform(0.0, 1.0))
        agent.kill()
        if not (state / "outbox.db").exists():
            continue  # killed before the outbox was created: nothing to check yet
        ledger = Ledger(read_outbox(state), deliveries.update())
        ledger.check(f"seed {seed}, after kill {kill + 1}\n{agent.tail()[-500:]}")
        print(f"kill {kill + 1}: {ledger.last_seq} events, {len(ledger.delivered)} delivered")
    stored = read_outbox(state)
    assert len(stored) > 10 * kills, f"only {len(stored)} events in {kills} runs: no real load"
    # A last, clean run: it must publish whatever the broker never acknowledged.
    scene = tmp_path / "short.jsonl"
    scene.write_text(short_scene())
    last = Agent(config, scene, speed=SPEED, exit_after=1)
    assert last.proc.wait(120) == 0, last.tail()
    ledger = Ledger(read_outbox(state))
    deliveries.wait_all(ledger.last_seq, 60)
    ledger.delivered = deliveries.update()
    ledger.check(f"seed {seed}, after the clean run")
    ledger.verify(key)
    assert all(sent for _, sent in ledger.stored.values()), "acknowledged events left unmarked"
    recorder.stop()


def seed() -> int:
    # Printed by pytest on failure (it is in the assertion messages): rerun with
    # TORTURE_SEED=<n> to replay the same kill moments.
    return int(os.environ.get("TORTURE_SEED", str(random.SystemRandom().randrange(1 << 32))))


def test_sigkill_at_30_random_moments_loses_nothing_and_reuses_no_seq(tmp_path, make_broker):
    kill_at_random(tmp_path, make_broker(tls=False), kills=30, seed=seed())


@pytest.mark.long
def test_sigkill_at_1000_random_moments_loses_nothing_and_reuses_no_seq(tmp_path, make_broker):
    kill_at_random(tmp_path, make_broker(tls=False), kills=1000, seed=seed())
