"""The broker dies under load, 50 times (long mode): the agent loses nothing and says
hello (birth) after every return.

mosquitto runs without persistence and is killed with SIGKILL, so it forgets its
sessions, retained birth and whatever it had not forwarded yet. What must hold on the
agent's side: every event ends up acknowledged by some broker (sent = 1 in the outbox,
none stuck), a retained `online` birth follows every restart, seqs and chain stay
whole. What the subscriber missed while the broker was down (the broker's loss, not
the agent's) is then asked for with a signed `resend`, the centre's tool for exactly
this, and must arrive: after that every seq is delivered.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

import pytest

from agent import wire
from tests.daemon.agent_process import keygen
from tests.support.broker import Broker
from tests.support.fixtures import Recorder
from tests.torture.harness import (
    DEVICE,
    Agent,
    Deliveries,
    Ledger,
    read_outbox,
    seq_runs,
    short_scene,
    steady_load,
    write_config,
)

RESTARTS = 50
SPEED = 20
STATUS = f"cabinet/lab/{DEVICE}/status"


def resend(recorder: Recorder, central: wire.SigningKey, first: int, last: int) -> None:
    now = time.time_ns() // 1_000_000
    command = wire.build_command(
        device=DEVICE,
        name="resend",
        args={"from_seq": first, "to_seq": last},
        nonce=uuid.uuid4().hex,
        issued_at_ms=now,
        expires_at_ms=now + 60_000,
        key=central,
    )
    topic = wire.command_topic("cabinet", "lab", DEVICE, "resend")
    recorder.client.publish(topic, json.dumps(command).encode(), qos=1)


def wait_until_all_sent(state: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(sent for _, sent in read_outbox(state).values()):
        if time.monotonic() > deadline:
            raise AssertionError(f"events still unacknowledged after {timeout} s")
        time.sleep(0.1)


def wait_birth_after(deliveries: Deliveries, since: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(at > since for at, _ in deliveries.births):
        if time.monotonic() > deadline:
            raise AssertionError(f"no birth within {timeout} s of a broker restart")
        deliveries.update()
        time.sleep(0.05)


@pytest.mark.long
def test_fifty_broker_kills_under_load_lose_nothing_and_each_return_gets_a_birth(
    tmp_path: Path, make_broker
) -> None:
    rng = random.Random()
    broker: Broker = make_broker(tls=False)
    recorder = Recorder(broker, "cabinet/#").start()
    deliveries = Deliveries(recorder.snapshot)
    central = wire.SigningKey.generate()
    key = keygen(tmp_path)  # provisioned up front: every run signs with it
    # reconnect_min_s = 1: the fastest the agent is allowed to come back.
    config = write_config(
        tmp_path, broker.url, central_pubkey=central.public.to_text(), reconnect_min_s=1
    )
    load = tmp_path / "steady.jsonl"
    load.write_text(steady_load(RESTARTS * 10 * SPEED))
    agent = Agent(config, load, speed=SPEED)
    try:
        agent.wait_ready(60)
        wait_birth_after(deliveries, 0.0, 30)
        for _ in range(RESTARTS):
            time.sleep(rng.uniform(0.2, 1.5))  # under load for a while
            broker.kill()
            time.sleep(rng.uniform(0.0, 1.0))  # and gone for a while
            restarted = time.monotonic()
            broker.restart()
            wait_birth_after(deliveries, restarted, 30)
            assert agent.proc.poll() is None, agent.tail()
        agent.proc.terminate()
        assert agent.proc.wait(15) == 0, agent.tail()
    finally:
        if agent.proc.poll() is None:
            agent.kill()
    # A last run drains what is left; then the centre asks for what its subscriber
    # missed while the broker was dead, and everything must arrive.
    scene = tmp_path / "short.jsonl"
    scene.write_text(short_scene())
    last = Agent(config, scene, speed=SPEED)
    try:
        last.wait_ready(60)
        wait_until_all_sent(tmp_path / "state", 60)
        ledger = Ledger(read_outbox(tmp_path / "state"))
        for first, end in seq_runs(deliveries.missing(ledger.last_seq)):
            resend(recorder, central, first, end)
        deliveries.wait_all(ledger.last_seq, 60)
        last.proc.terminate()
        assert last.proc.wait(15) == 0, last.tail()
    finally:
        if last.proc.poll() is None:
            last.kill()
    ledger = Ledger(read_outbox(tmp_path / "state"), deliveries.update())
    assert all(sent for _, sent in ledger.stored.values()), "events never acknowledged"
    ledger.check("after 50 broker kills")
    ledger.verify(key)
    recorder.stop()
