"""Signed commands and their answers, without a broker."""

from __future__ import annotations

import pytest

from agent.wire import SigningKey, VerifyKey, WireError, check_signature
from central.commands import AnswerWatch, issue
from central.errors import CentralError
from central.registry import Device
from central.timefmt import duration_s, grams, grams_to_mg
from tests.central.cabinet import FakeCabinet

CENTRAL = SigningKey.from_seed(bytes(range(32)))


def device_of(cab: FakeCabinet) -> Device:
    return Device(cab.device, cab.site, "", VerifyKey.from_text(cab.pubkey))


def test_a_command_is_signed_for_one_device_expires_and_has_a_fresh_nonce() -> None:
    cab = FakeCabinet()
    one = issue(device_of(cab), "ack", {"alarm": "A1"}, CENTRAL, now_ms=1000, ttl_s=300)
    two = issue(device_of(cab), "ack", {"alarm": "A1"}, CENTRAL, now_ms=1000, ttl_s=300)
    assert one.nonce != two.nonce and len(one.nonce) >= 20
    doc = one.document
    assert doc["device"] == "cab-1" and doc["name"] == "ack" and doc["args"] == {"alarm": "A1"}
    assert (doc["issued_at_ms"], doc["expires_at_ms"]) == (1000, 301_000)
    assert one.topic == "cabinet/lab/cab-1/cmd/ack"
    assert one.answer_topics == ("cabinet/lab/cab-1/evt/command",)
    check_signature(doc, CENTRAL.public)
    with pytest.raises(WireError):
        check_signature({**doc, "device": "cab-2"}, CENTRAL.public)


def test_only_a_verified_answer_with_our_nonce_counts() -> None:
    cab, impostor = FakeCabinet(), FakeCabinet()
    issued = issue(device_of(cab), "snapshot", {}, CENTRAL, now_ms=0)
    watch = AnswerWatch(issued)
    topic = "cabinet/lab/cab-1/evt/command"
    other = cab.emit("command.applied", {"name": "snapshot", "nonce": "someone-else"})
    assert watch.feed(topic, other.payload) is None
    forged = impostor.emit("command.applied", {"name": "snapshot", "nonce": issued.nonce})
    assert watch.feed(topic, forged.payload) is None
    assert "does not verify" in watch.forgeries[0]
    assert watch.feed(topic, b"garbage") is None
    real = cab.emit("command.rejected", {"name": "snapshot", "nonce": issued.nonce, "reason": "x"})
    answer = watch.feed(topic, real.payload)
    assert answer is not None and not answer.applied
    assert answer.describe() == f"REJECTED: x [command.rejected seq {real.seq}]"


def test_a_policy_answer_is_policy_applied_or_rejected() -> None:
    cab = FakeCabinet()
    issued = issue(device_of(cab), "policy", {"policy": {}}, CENTRAL, now_ms=0)
    assert issued.answer_topics == ("cabinet/lab/cab-1/evt/command", "cabinet/lab/cab-1/evt/policy")
    env = cab.emit(
        "policy.applied", {"name": "policy", "nonce": issued.nonce, "version": 8, "reason": None}
    )
    answer = AnswerWatch(issued).feed("t", env.payload)
    assert answer is not None and answer.applied
    assert answer.describe().startswith("applied (policy version 8)")


def test_amounts_and_durations_are_exact() -> None:
    assert grams_to_mg("25.5", "--max-grams") == 25_500
    assert grams_to_mg("0.001", "--max-grams") == 1
    assert grams(25_500) == "25.500" and grams(-1) == "-0.001"
    for bad in ("25.0001", "-1", "1e3", "", "0"):
        with pytest.raises(CentralError):
            grams_to_mg(bad, "--max-grams")
    assert [duration_s(t, "--ttl") for t in ("300", "90s", "15m", "2h", "1d")] == [
        300,
        90,
        900,
        7200,
        86400,
    ]
    with pytest.raises(CentralError):
        duration_s("soon", "--ttl")
