"""Judging in worker processes (central.ingest.workers): the same judgements as judging
in-process, in the batch's order, whatever a worker does, even when it is killed."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.ingest.verifying import judge
from central.ingest.workers import JudgePool, auto_workers
from central.registry import Device
from central.store.recording import Rejected, Verified
from tests.central.cabinet import FakeCabinet, forge
from tests.central_service.rig import descendants, wait_until

CABINETS = [FakeCabinet(device=f"cab-{i}") for i in range(3)]
STRANGER = FakeCabinet(device="cab-stranger")
DEVICES = {c.device: Device(c.device, c.site, c.device, c.key.public) for c in CABINETS}


def _messages() -> list[tuple[str, bytes]]:
    """Every kind a batch may hold: good envelopes, a forgery, a modified one, bytes
    that are no JSON, a stranger, a status birth, a topic of another cabinet."""
    out: list[tuple[str, bytes]] = []
    for cab in CABINETS:
        for i in range(4):
            env = cab.emit("system.heartbeat", {"uptime_s": i, "outbox_unsent": 0})
            out.append((cab.topic(env), env.payload))
    cab = CABINETS[0]
    env = cab.emit("door.opened", {"session": "s"})
    out.append((cab.topic(env), forge(env, data={"session": "other"})))
    out.append((cab.topic(env), FakeCabinet(device=cab.device).emit("door.opened").payload))
    out.append((cab.topic(env), b"{not json"))
    out.append((CABINETS[1].topic(env), env.payload))  # cab-0's envelope on cab-1's topic
    lone = STRANGER.emit("system.started", {})
    out.append((STRANGER.topic(lone), lone.payload))
    out.append((f"cabinet/{cab.site}/{cab.device}/status", b'{"state":"online","boot":1}'))
    return out


MESSAGES = _messages()


def _in_process(batch: list[tuple[str, bytes]]) -> list[object]:
    return [judge(t, p, DEVICES, 7) for t, p in batch]


@pytest.fixture(scope="module")
def pool() -> Iterator[JudgePool]:
    judges = JudgePool(2, lambda: DEVICES, smallest_shared=1)
    judges.start()
    yield judges
    judges.close()


def _workers_of(pool_owner: int) -> set[int]:
    """The worker processes: below this process, under the fork server."""
    below = descendants(pool_owner)
    return {pid for pid in below if descendants(pid) == set()} - {pool_owner}


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(MESSAGES), min_size=1, max_size=60))
def test_workers_judge_every_kind_of_message_as_the_ingest_thread_would_in_order(
    pool: JudgePool, batch: list[tuple[str, bytes]]
) -> None:
    assert pool.submit(batch, 7).result() == _in_process(batch)


def test_a_bad_envelope_in_a_batch_spoils_nothing_around_it(pool: JudgePool) -> None:
    judged = pool.submit(MESSAGES, 7).result()
    kinds = [type(j).__name__ for j in judged]
    assert kinds[:12] == ["Verified"] * 12
    assert [j.reason.split(":")[0] for j in judged[12:17] if isinstance(j, Rejected)] == [
        "forged or modified",
        "forged or modified",
        "malformed",
        "wrong device",
        "unknown device",
    ]
    assert kinds[-1] == "Presence"


def test_a_killed_worker_loses_and_reorders_nothing_and_the_pool_starts_again() -> None:
    others = _workers_of(os.getpid())  # the module's pool (one fork server serves both)
    judges = JudgePool(2, lambda: DEVICES, smallest_shared=1)
    judges.start()
    try:
        before = _workers_of(os.getpid()) - others
        assert len(before) == 2
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not (_workers_of(os.getpid()) & before), 10, "the workers to die")
        # the batch sent to the dead pool is judged whole and in order all the same
        assert judges.submit(MESSAGES, 7).result() == _in_process(MESSAGES)
        assert judges.restarts == 1
        assert judges.submit(MESSAGES, 7).result() == _in_process(MESSAGES)
        after = _workers_of(os.getpid()) - others
        assert len(after) == 2 and not (after & before)  # fresh workers judge again
    finally:
        judges.close()


def test_two_batches_caught_in_a_dying_pool_leave_the_fresh_pool_alone() -> None:
    others = _workers_of(os.getpid())
    judges = JudgePool(2, lambda: DEVICES, smallest_shared=1)
    judges.start()
    big = MESSAGES * 300  # ~0.3 s of judging per worker: still running when killed
    try:
        first, second = judges.submit(big, 7), judges.submit(big, 7)
        for pid in _workers_of(os.getpid()) - others:
            os.kill(pid, signal.SIGKILL)
        assert first.result() == _in_process(big)
        third = judges.submit(MESSAGES, 7)  # in a fresh pool
        assert second.result() == _in_process(big)  # must not take the fresh pool down
        assert third.result() == _in_process(MESSAGES)
        assert judges.restarts == 1
    finally:
        judges.close()


def test_a_cabinet_added_to_the_registry_is_believed_by_the_workers_from_then_on() -> None:
    registry = {"devices": DEVICES}
    judges = JudgePool(1, lambda: registry["devices"], smallest_shared=1)
    judges.start()
    try:
        newcomer = STRANGER.envelopes[0]
        message = [(STRANGER.topic(newcomer), newcomer.payload)]
        first = judges.submit(message, 7).result()[0]
        assert isinstance(first, Rejected) and first.reason.startswith("unknown device")
        registry["devices"] = {
            **DEVICES,
            STRANGER.device: Device(STRANGER.device, STRANGER.site, "", STRANGER.key.public),
        }
        assert isinstance(judges.submit(message, 7).result()[0], Verified)
    finally:
        judges.close()


def test_small_batches_and_zero_workers_are_judged_in_process() -> None:
    others = _workers_of(os.getpid())
    judges = JudgePool(0, lambda: DEVICES)
    judges.start()  # starts nothing
    assert judges.submit(MESSAGES, 7).result() == _in_process(MESSAGES)
    assert JudgePool(2, lambda: DEVICES).submit(MESSAGES[:3], 7).result() == _in_process(
        MESSAGES[:3]
    )  # fewer than smallest_shared: no round trip to a worker
    assert _workers_of(os.getpid()) == others


def test_auto_leaves_two_cores_to_the_ingest_process_and_uses_at_most_two() -> None:
    assert [auto_workers(cpus) for cpus in (1, 2, 3, 4, 16)] == [0, 0, 1, 2, 2]
