"""Envelopes: whatever an event holds, it signs, verifies and chains; any tampering shows."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.wire import (
    GENESIS_PREV,
    SigningKey,
    WireError,
    build_envelope,
    open_signed_policy,
    parse_envelope,
    sign_policy,
    verify_chain,
    verify_envelope,
)

KEY = SigningKey.from_seed(b"\x07" * 32)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
events = st.fixed_dictionaries(
    {
        "device": st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True),
        "boot": st.integers(1, 10_000),
        "ts": st.integers(0, 2**45),
        "mono": st.integers(0, 2**40),
        "clock_ok": st.booleans(),
        "type": st.sampled_from(
            ["access.granted", "alarm.raised", "env.reading", "inventory.withdrawal"]
        ),
        "sev": st.sampled_from(["info", "warning", "alarm"]),
        "data": st.dictionaries(st.text(max_size=10), json_values, max_size=6),
    }
)


def chain(specs: list[dict]) -> list[dict]:
    out, prev = [], GENESIS_PREV
    for seq, spec in enumerate(specs, start=1):
        env = build_envelope(seq=seq, prev=prev, key=KEY, **{**spec, "device": specs[0]["device"]})
        out.append(json.loads(env.payload))
        prev = env.hash
    return out


@settings(max_examples=300, deadline=None)  # a loaded CI machine is slow, not wrong
@given(st.lists(events, min_size=1, max_size=5))
def test_any_event_signs_parses_and_verifies_in_its_chain(specs: list[dict]) -> None:
    envelopes = chain(specs)
    for env in envelopes:
        parse_envelope(json.dumps(env, ensure_ascii=False))
        verify_envelope(env, KEY.public)
    report = verify_chain(envelopes, KEY.public)
    assert report.ok and report.events == len(specs)


@settings(max_examples=300, deadline=None)  # a loaded CI machine is slow, not wrong
@given(st.lists(events, min_size=1, max_size=4), st.data())
def test_changing_any_field_of_a_stored_envelope_breaks_verification(specs, data) -> None:
    envelopes = chain(specs)
    victim = data.draw(st.integers(0, len(envelopes) - 1))
    field = data.draw(
        st.sampled_from(["boot", "ts", "mono", "clock_ok", "type", "sev", "data", "prev"])
    )
    original = envelopes[victim][field]
    replacement = data.draw(
        json_values.filter(
            lambda v: (
                (v != original and type(v) is type(original)) or not isinstance(original, dict)
            )
        )
    )
    if replacement == original:
        return
    envelopes[victim] = {**envelopes[victim], field: replacement}
    report = verify_chain(envelopes, KEY.public)
    assert not report.ok
    assert report.failures[0].seq == victim + 1


def test_a_float_is_refused_on_the_wire() -> None:
    with pytest.raises(WireError, match="floats"):
        build_envelope(
            device="d",
            boot=1,
            seq=1,
            ts=1,
            mono=1,
            clock_ok=True,
            type="env.reading",
            sev="info",
            data={"voc_ppb": 1.5},
            prev=GENESIS_PREV,
            key=KEY,
        )


def test_a_gap_is_a_failure_unless_the_device_signed_that_it_shed_telemetry() -> None:
    specs = [
        {
            "device": "cab",
            "boot": 1,
            "ts": 1,
            "mono": 1,
            "clock_ok": True,
            "type": "env.reading",
            "sev": "info",
            "data": {},
        }
        for _ in range(5)
    ]
    envelopes = chain(specs)
    holed = envelopes[:1] + envelopes[3:]
    assert verify_chain(holed, KEY.public).failures[0].reason == "missing seq 2..3"
    note = build_envelope(
        device="cab",
        boot=1,
        seq=6,
        ts=1,
        mono=1,
        clock_ok=True,
        type="system.outbox_dropped",
        sev="warning",
        data={"count": 2, "from_seq": 2, "to_seq": 3},
        prev=json_hash(envelopes[4]),
        key=KEY,
    )
    report = verify_chain([*holed, json.loads(note.payload)], KEY.public)
    assert report.ok and report.shed == 2


def json_hash(env: dict) -> str:
    from agent.wire import envelope_hash

    return envelope_hash(env)


def test_another_devices_key_does_not_verify() -> None:
    env = chain(
        [
            {
                "device": "cab",
                "boot": 1,
                "ts": 1,
                "mono": 1,
                "clock_ok": True,
                "type": "door.opened",
                "sev": "info",
                "data": {"session": None},
            }
        ]
    )
    report = verify_chain(env, SigningKey.generate().public)
    assert report.failures[0].reason == "bad signature"


@pytest.mark.parametrize(
    "payload, why",
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"v":1}', "fields"),
    ],
)
def test_malformed_envelopes_are_refused_with_a_reason(payload: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        parse_envelope(payload)


def test_a_signed_policy_opens_only_with_the_central_key() -> None:
    signed = sign_policy({"version": 3, "cabinet": "*"}, KEY)
    assert open_signed_policy(signed, KEY.public)["version"] == 3
    with pytest.raises(WireError, match="bad signature"):
        open_signed_policy({**signed, "policy": {"version": 4, "cabinet": "*"}}, KEY.public)
