"""Signed commands (docs/protocol.md): what the verifier accepts, refuses, and remembers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import wire
from agent.commands import (
    CommandVerifier,
    load_persisted_policy,
    persist_policy,
)
from agent.nonces import NonceStore
from config.policy import Policy
from rules.cabinet import CabinetRules
from rules.command_args import Ack, parse_command
from rules.effects import Emit, Instant
from rules.inputs import CommandReceived, CommandRejected, PolicyLoaded

DEVICE = "cab-1"
NOW = 1_790_000_000_000
CENTRAL = wire.SigningKey.from_seed(bytes(range(32)))
TOPIC = f"cabinet/lab/{DEVICE}/cmd/"


def policy_doc(version: int = 2, key: wire.SigningKey = CENTRAL, **extra: Any) -> dict[str, Any]:
    inner = {"version": version, "issued_at": "2026-11-22T08:00:00Z", "cabinet": DEVICE, **extra}
    return wire.sign_policy(inner, key)


def command(
    name: str,
    args: dict[str, Any],
    *,
    nonce: str = "n-1",
    device: str = DEVICE,
    expires: int = NOW + 60_000,
    key: wire.SigningKey = CENTRAL,
) -> bytes:
    doc = wire.build_command(
        device=device,
        name=name,
        args=args,
        nonce=nonce,
        issued_at_ms=NOW - 1000,
        expires_at_ms=expires,
        key=key,
    )
    return json.dumps(doc).encode()


@pytest.fixture
def verifier(tmp_path: Path) -> CommandVerifier:
    return CommandVerifier(DEVICE, CENTRAL.public, NonceStore(tmp_path / "nonces.db"))


def reason(verdict: object) -> str:
    assert isinstance(verdict, CommandRejected), verdict
    return verdict.reason


def test_a_valid_policy_command_becomes_a_loaded_policy(verifier):
    signed = policy_doc(version=7)
    verdict = verifier.check(TOPIC + "policy", command("policy", {"policy": signed}), NOW)
    assert isinstance(verdict, PolicyLoaded)
    assert isinstance(verdict.policy, Policy) and verdict.policy.version == 7
    assert verdict.document == signed and verdict.source == "command" and verdict.nonce == "n-1"


def test_an_older_policy_still_passes_the_verifier_the_rules_judge_the_version(verifier):
    verdict = verifier.check(TOPIC + "policy", command("policy", {"policy": policy_doc(1)}), NOW)
    assert isinstance(verdict, PolicyLoaded) and verdict.policy.version == 1


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("approve", {"person": "p-1001", "by": "p-1003"}),
        (
            "approve_withdrawal",
            {
                "container": "c-1",
                "max_mg": 5000,
                "persons": ["p-1", "p-2"],
                "until_ms": NOW,
                "by": "p-3",
                "purpose": "assay",
            },
        ),
        ("ack", {"alarm": "al-7", "by": "op-1"}),
        ("snapshot", {}),
        ("resend", {"from_seq": 10, "to_seq": 20}),
    ],
)
def test_each_valid_command_reaches_the_core(verifier, name, args):
    verdict = verifier.check(TOPIC + name, command(name, args), NOW)
    assert verdict == CommandReceived(parse_command(name, args), nonce="n-1")


def test_a_replayed_command_is_refused_even_after_a_restart(tmp_path):
    payload = command("snapshot", {})
    first = CommandVerifier(DEVICE, CENTRAL.public, NonceStore(tmp_path / "n.db"))
    assert isinstance(first.check(TOPIC + "snapshot", payload, NOW), CommandReceived)
    assert reason(first.check(TOPIC + "snapshot", payload, NOW)) == "replayed_nonce"
    first.nonces.close()
    again = CommandVerifier(DEVICE, CENTRAL.public, NonceStore(tmp_path / "n.db"))
    assert reason(again.check(TOPIC + "snapshot", payload, NOW + 1)) == "replayed_nonce"


def test_refusals_have_machine_readable_reasons(verifier):
    forger = wire.SigningKey.generate()
    cases = {
        "bad_signature": (TOPIC + "ack", command("ack", {"alarm": "a", "by": "p"}, key=forger)),
        "wrong_device": (TOPIC + "ack", command("ack", {"alarm": "a", "by": "p"}, device="cab-2")),
        "expired": (TOPIC + "ack", command("ack", {"alarm": "a", "by": "p"}, expires=NOW - 1)),
        "validity_too_long": (
            TOPIC + "ack",
            command("ack", {"alarm": "a", "by": "p"}, expires=NOW + 8 * 24 * 3600 * 1000),
        ),
        "topic_mismatch": (TOPIC + "policy", command("ack", {"alarm": "a", "by": "p"})),
        "bad_args": (TOPIC + "ack", command("ack", {"alarm": 7})),
        "too_large": (TOPIC + "ack", b" " * (64 * 1024 + 1)),
        "malformed": (TOPIC + "ack", b"{not json"),
        "bad_policy_signature": (
            TOPIC + "policy",
            command("policy", {"policy": policy_doc(key=forger)}),
        ),
        "invalid_policy": (
            TOPIC + "policy",
            command("policy", {"policy": policy_doc(pair_window=3)}),
        ),
    }
    for expected, (topic, payload) in cases.items():
        assert reason(verifier.check(topic, payload, NOW)) == expected, expected
    assert len(verifier.nonces) == 0  # nothing refused consumed a nonce


def test_a_rejection_names_the_command_and_nonce_when_known(verifier):
    verdict = verifier.check(
        TOPIC + "policy", command("policy", {"policy": {"x": 1}}, nonce="abc"), NOW
    )
    assert verdict == CommandRejected(name="policy", nonce="abc", reason="invalid_policy")


def test_an_unknown_signed_command_is_refused(verifier):
    doc = wire.sign_document(
        {
            "v": 1,
            "device": DEVICE,
            "name": "open_door",
            "nonce": "n",
            "issued_at_ms": NOW,
            "expires_at_ms": NOW + 1,
            "args": {},
        },
        CENTRAL,
    )
    verdict = verifier.check(TOPIC + "open_door", json.dumps(doc).encode(), NOW)
    assert verdict == CommandRejected(name="open_door", nonce="n", reason="unknown_command")


def test_duplicate_keys_floats_and_deep_nesting_are_malformed(verifier):
    valid = json.loads(command("ack", {"alarm": "a", "by": "p"}))
    text = json.dumps(valid)
    dup = text[:-1] + ', "nonce": "other"}'
    floaty = json.dumps({**valid, "issued_at_ms": 1.5})
    deep = json.dumps({**valid, "args": {"alarm": "a", "x": json.loads("[" * 40 + "]" * 40)}})
    for payload in (dup, floaty, deep, "[" * 100_000, "\ufeff" + text, "null", "[]"):
        assert reason(verifier.check(TOPIC + "ack", payload.encode(), NOW)) in (
            "malformed",
            "too_large",
        )


def test_a_policy_is_persisted_atomically_and_reloaded_only_if_it_verifies(tmp_path):
    signed = policy_doc(version=3)
    (tmp_path / ".policy.json.999.tmp").write_text("half a file")  # a power cut mid-write
    path = persist_policy(tmp_path, signed)
    assert json.loads(path.read_bytes()) == signed
    loaded = load_persisted_policy(tmp_path, CENTRAL.public)
    assert loaded is not None and loaded[0].version == 3 and loaded[1] == signed
    assert not list(tmp_path.glob("*.tmp"))
    assert load_persisted_policy(tmp_path, wire.SigningKey.generate().public) is None
    tampered = json.loads(path.read_bytes())
    tampered["policy"]["version"] = 99
    path.write_text(json.dumps(tampered))
    assert load_persisted_policy(tmp_path, CENTRAL.public) is None
    assert load_persisted_policy(tmp_path / "nowhere", CENTRAL.public) is None


# --- fuzz: whatever arrives, the verifier answers with a rejection and never raises ------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
FIELDS = ["v", "device", "name", "nonce", "issued_at_ms", "expires_at_ms", "args", "sig"]


@st.composite
def mutated_commands(draw: st.DrawFn) -> bytes:
    doc = json.loads(command(draw(st.sampled_from(["ack", "policy", "resend"])), {}))
    field = draw(st.sampled_from(FIELDS))
    if draw(st.booleans()):
        # A "mutation" to the same value would leave a validly signed command.
        original = doc[field]
        doc[field] = draw(json_values.filter(lambda v: json.dumps(v) != json.dumps(original)))
    else:
        del doc[field]
    return json.dumps(doc).encode()


def nested(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated_commands(),
    st.integers(min_value=33, max_value=5000).map(nested),
    st.integers(min_value=64 * 1024 + 1, max_value=300_000).map(lambda n: b"[" * n),
)


FUZZ_VERIFIER = CommandVerifier(DEVICE, CENTRAL.public, NonceStore(Path(":memory:")))


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(payload=payloads, name=st.sampled_from(["ack", "policy", "resend", "x"]))
def test_any_malformed_payload_is_rejected_never_raises(payload, name):
    verdict = FUZZ_VERIFIER.check(TOPIC + name, payload, NOW)
    assert isinstance(verdict, CommandRejected)
    assert verdict.reason in {"malformed", "too_large", "bad_signature"}
    assert len(verdict.name) <= 32 and len(verdict.nonce) <= 128
    assert len(FUZZ_VERIFIER.nonces) == 0


@pytest.mark.parametrize(
    ("name", "args", "expires", "expected"),
    [
        ("ack", {"alarm": "A1-1", "by": "p"}, 2**70, "malformed"),  # no clock reaches 2^70 ms
        ("resend", {"from_seq": 1, "to_seq": 2**70}, NOW + 60_000, "malformed"),
        (
            "approve_withdrawal",
            {"container": "c", "max_mg": 2**64, "persons": ["p"], "until_ms": NOW, "by": "k"},
            NOW + 60_000,
            "malformed",
        ),
        ("approve", {"person": "p-1002"}, NOW + 60_000, "bad_args"),  # who approves?
        ("ack", {"alarm": "A1-1", "by": "p", "comment": "line\nbreak"}, NOW + 60_000, "bad_args"),
        ("ack", {"alarm": "A1-1", "by": "p", "comment": ""}, NOW + 60_000, "bad_args"),
        ("ack", {"alarm": "A1-1", "comment": "seen"}, NOW + 60_000, "bad_args"),  # by whom?
        (
            "approve_withdrawal",
            {"container": "c", "max_mg": 5000, "persons": ["p"], "until_ms": NOW, "by": "k"},
            NOW + 60_000,
            "bad_args",  # for what? (用途)
        ),
        (
            "approve_disposal",
            {"container": "c", "persons": ["p"], "until_ms": NOW, "purpose": "waste"},
            NOW + 60_000,
            "bad_args",  # approved by whom?
        ),
    ],
)
def test_numbers_out_of_range_and_bad_people_fields_are_refused_not_crashes(
    verifier, caplog, name, args, expires, expected
):
    doc = wire.build_command(
        device=DEVICE,
        name=name,
        args=args,
        nonce="big",
        issued_at_ms=NOW - 1000,
        expires_at_ms=expires,
        key=CENTRAL,
    )
    verdict = verifier.check(TOPIC + name, json.dumps(doc).encode(), NOW)
    assert reason(verdict) == expected
    assert "Traceback" not in caplog.text
    assert len(verifier.nonces) == 0


def test_an_ack_carries_who_and_why_to_the_rules(verifier):
    args = {"alarm": "A1-1", "by": "p-1001", "comment": "扫描确认 fume hood on"}
    verdict = verifier.check(TOPIC + "ack", command("ack", args), NOW)
    assert verdict == CommandReceived(
        Ack(alarm="A1-1", by="p-1001", comment=args["comment"]), "n-1"
    )


def test_a_signed_command_refused_for_its_args_still_names_who_asked(verifier):
    args = {
        "container": "c-NaCN-01",
        "max_mg": 5000,
        "persons": ["p-1002", "p-1001"],
        "until_ms": NOW,
        "by": "p-1003",
    }  # no purpose: bad_args, but the record keeps the people
    verdict = verifier.check(TOPIC + "approve_withdrawal", command("approve_withdrawal", args), NOW)
    assert reason(verdict) == "bad_args"
    assert isinstance(verdict, CommandRejected)
    assert verdict.named == {
        "container": "c-NaCN-01",
        "persons": ["p-1001", "p-1002"],
        "by": "p-1003",
    }


def test_a_refusal_keeps_only_plain_ids_and_a_forgery_names_no_one(verifier):
    odd = {"alarm": "A1-1", "by": "p\n1001", "persons": ["x" * 65], "person": 7}
    verdict = verifier.check(TOPIC + "ack", command("ack", odd), NOW)
    assert isinstance(verdict, CommandRejected) and verdict.reason == "bad_args"
    assert verdict.named == {"alarm": "A1-1"}
    forged = command("ack", {"alarm": "A1-1", "by": "p-1001"}, key=wire.SigningKey.generate())
    verdict = verifier.check(TOPIC + "ack", forged, NOW)
    assert isinstance(verdict, CommandRejected) and verdict.reason == "bad_signature"
    assert verdict.named == {}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"x": 1}, "invalid_policy"),  # not a signed policy at all: nothing to read
        (policy_doc(version=9, key=wire.SigningKey.generate()), "bad_policy_signature"),
    ],
)
def test_a_policy_refused_before_it_could_be_read_is_recorded_with_version_null(
    verifier, policy, expected
):
    verdict = verifier.check(TOPIC + "policy", command("policy", {"policy": policy}), NOW)
    assert reason(verdict) == expected
    rules = CabinetRules(DEVICE, "test")
    effects = rules.step(verdict, Instant(NOW, 0))
    (rejected,) = [e for e in effects if isinstance(e, Emit) and e.type == "policy.rejected"]
    assert rejected.data["version"] is None  # a forged "version 9" is not believed
    assert (rejected.data["reason"], rejected.data["nonce"]) == (expected, "n-1")
