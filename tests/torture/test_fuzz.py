"""Bad input of any kind never crashes the agent or changes its state:
hypothesis on the three trust boundaries, in CI sizes. The long mode is atheris
(tests/torture/fuzz_atheris.py, run by test_atheris_long.py with --long).

Mutations start from genuine, signed inputs so the search reaches the checks behind
the parser: a field changed after signing, a signature moved to another document, the
right bytes on the wrong topic, a signed command carrying an unsigned policy.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import wire
from firmware_bridge.messages import Ack, Nack
from firmware_bridge.protocol import encode
from tests.firmware_bridge.strategies import byte_mutation, frames
from tests.torture.fuzz_checks import (
    COMMAND_NAMES,
    ROOT,
    CommandTarget,
    PolicyTarget,
    check_serial,
    genuine_command,
    seed_commands,
    signed_policy,
)


def ci(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def field_mutation(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(document))
    target = doc
    if isinstance(doc.get("args"), dict) and draw(st.booleans()):
        target = doc["args"]
    keys = sorted(target) or ["x"]
    key = draw(st.sampled_from([*keys, "extra"]))
    if draw(st.booleans()) and key in target:
        del target[key]
    else:
        target[key] = draw(json_values)
    return doc


@st.composite
def reserialized(draw: st.DrawFn, document: dict[str, Any]) -> bytes:
    """Same content, other bytes: still what the centre signed."""
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", ": ")]))
    text = json.dumps(
        document,
        separators=separators,
        sort_keys=draw(st.booleans()),
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 2])),
    )
    return text.encode()


@st.composite
def command_payloads(draw: st.DrawFn) -> tuple[str, bytes]:
    seed = draw(st.sampled_from(seed_commands_cached()))
    fresh = genuine_command(seed["name"], seed["args"])  # a new nonce: acceptable if intact
    kind = draw(
        st.sampled_from(["genuine", "field", "bytes", "reserialized", "wrong_key", "json", "raw"])
    )
    if kind == "genuine":
        payload = json.dumps(fresh).encode()
    elif kind == "field":
        payload = json.dumps(draw(field_mutation(fresh))).encode()
    elif kind == "bytes":
        payload = draw(byte_mutation(json.dumps(fresh).encode()))
    elif kind == "reserialized":
        payload = draw(reserialized(fresh))
    elif kind == "wrong_key":
        unsigned = {k: v for k, v in fresh.items() if k != "sig"}
        payload = json.dumps(wire.sign_document(unsigned, wire.SigningKey.generate())).encode()
    elif kind == "json":
        payload = json.dumps(draw(json_values)).encode()
    else:
        payload = draw(st.binary(max_size=300))
    name = draw(st.sampled_from([fresh["name"], fresh["name"], *COMMAND_NAMES, "x"]))
    return name, payload


@st.composite
def policy_files(draw: st.DrawFn) -> tuple[bytes, str, bool]:
    simulated = draw(st.booleans())
    if draw(st.booleans()):
        text = (ROOT / "examples" / "policy.toml").read_bytes()
        return draw(byte_mutation(text)), ".toml", simulated
    document = signed_policy(draw(st.integers(0, 20)))
    kind = draw(st.sampled_from(["genuine", "field", "inner", "bytes", "raw"]))
    if kind == "genuine":
        data = draw(reserialized(document))
    elif kind == "field":
        data = json.dumps(draw(field_mutation(document))).encode()
    elif kind == "inner":
        changed = {**document, "policy": draw(field_mutation(document["policy"]))}
        data = json.dumps(changed).encode()
    elif kind == "bytes":
        data = draw(byte_mutation(json.dumps(document).encode()))
    else:
        data = draw(st.binary(max_size=400))
    return data, ".json", simulated


@functools.cache
def seed_commands_cached() -> list[dict[str, Any]]:
    return seed_commands()


@functools.cache
def command_target() -> CommandTarget:
    return CommandTarget()


@functools.cache
def policy_target() -> PolicyTarget:
    return PolicyTarget()


@ci(1500)
@given(
    noise=st.binary(max_size=400), good=st.lists(frames(), max_size=6), cuts=st.binary(max_size=8)
)
def test_serial_garbage_between_frames_never_crashes_and_frames_still_arrive(
    noise: bytes, good: list[Any], cuts: bytes
) -> None:
    # Each frame is followed by a slice of the noise; encode() delimits both ends, so the
    # noise can cost nothing but itself.
    stream = b"".join(encode(f) + noise[i::7] for i, f in enumerate(good)) + noise
    assert check_serial(stream, cuts) == expected_deliveries(good)


def expected_deliveries(frames_sent: list[Any]) -> list[Any]:
    """What the channel should hand on: no ACK/NACK, no back-to-back duplicate seq."""
    out, last = [], None
    for frame in frames_sent:
        message = frame.message
        if isinstance(message, Ack | Nack):
            continue
        if message.RELIABLE and not message.RESYNC and frame.seq == last:
            continue
        if message.RELIABLE:
            last = frame.seq
        out.append(frame)
    return out


@ci(1500)
@given(command=command_payloads())
def test_no_mqtt_payload_the_centre_did_not_sign_is_accepted_or_changes_state(
    command: tuple[str, bytes],
) -> None:
    command_target().check(*command)


@ci(400)
@given(policy=policy_files())
def test_no_policy_file_the_centre_did_not_sign_is_believed_and_none_crashes(
    policy: tuple[bytes, str, bool],
) -> None:
    policy_target().check(*policy)


def test_the_fuzzers_reach_acceptance_too() -> None:
    """Guard against a vacuous run: genuine inputs must get through each target."""
    target = command_target()
    for seed in seed_commands_cached():
        target.check(seed["name"], json.dumps(genuine_command(seed["name"], seed["args"])).encode())
    assert target.accepted >= len(seed_commands_cached())
    policies = policy_target()
    policies.check(json.dumps(signed_policy(9)).encode(), ".json", False)
    policies.check((ROOT / "examples" / "policy.toml").read_bytes(), ".toml", True)
    assert policies.accepted >= 2
