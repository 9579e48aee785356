"""The verifier encodes an envelope once: the signed message it cuts out of the canonical
bytes is exactly what a second encoding would give, whatever `data` and `type` hold."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.wire import GENESIS_PREV, BadSignature, ChainVerifier, build_envelope, canonical
from agent.wire import parse_envelope as parse
from agent.wire.encoding import MalformedJson
from agent.wire.envelope import signed_message
from agent.wire.strict_json import parse_json
from tests.foundation.test_wire import KEY, events

# `data` that looks like the envelope's own tail: a nested "sig" and "ts" must not be
# mistaken for the top-level ones.
look_alikes = st.fixed_dictionaries(
    {"a": st.integers(), "sig": st.text(max_size=12), "ts": st.integers(), "v": st.integers()}
)


def _sealed(spec: dict) -> bytes:
    return build_envelope(seq=1, prev=GENESIS_PREV, key=KEY, **spec).payload


@settings(max_examples=300, deadline=None)
@given(events, st.none() | look_alikes, st.text(max_size=12))
def test_the_signed_message_is_the_canonical_bytes_without_sig(spec, look_alike, type_tail):
    if look_alike is not None:
        spec = {**spec, "data": {**spec["data"], "x": look_alike}}
    spec = {**spec, "type": spec["type"] + type_tail}
    fields = parse(_sealed(spec))
    payload = canonical(fields)
    unsigned = canonical({k: v for k, v in fields.items() if k != "sig"})
    assert signed_message(fields, payload) == unsigned


@settings(max_examples=100, deadline=None)
@given(events, st.sampled_from(['\\"', "==", "A", '","ts":1']))
def test_a_sig_that_is_not_canonical_base64url_is_refused_not_misread(spec, junk):
    fields = parse(_sealed(spec))
    tampered = json.dumps({**fields, "sig": fields["sig"] + junk}).encode()
    outcome = ChainVerifier(KEY.public, spec["device"]).authenticate(tampered)
    assert isinstance(outcome, BadSignature)


def _depth(value: object) -> int:
    """How deep the deepest item sits (the top is at 0)."""
    children = value.values() if isinstance(value, dict) else value
    if not isinstance(value, dict | list) or not children:
        return 0
    return 1 + max(map(_depth, children))


nested = st.recursive(
    st.integers() | st.sampled_from(["{", "[[", "a"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(nested, st.integers(0, 6))
def test_nesting_past_the_limit_is_refused_and_nothing_else(value, limit):
    # the reader skips its walk when the text cannot nest that deep: same verdicts
    raw = json.dumps(value).encode()
    deep = _depth(value) > limit
    try:
        parse_json(raw, max_depth=limit)
    except MalformedJson as exc:
        assert deep and "too deep" in str(exc)
    else:
        assert not deep


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # the same patch for all
)
@given(st.integers(34, 200_000), st.sampled_from(["[", '{"a":', '["\\"[",']))
def test_a_payload_nested_far_past_the_limit_is_refused_before_the_parser_recurses(
    monkeypatch, depth, opener
):
    # json.loads recurses once per level: thousands of levels run the interpreter to its
    # recursion limit, where any finaliser that happens to run fails. It is never asked.
    def must_not_parse(*args, **kwargs):
        raise AssertionError("json.loads was asked to parse a hostile nesting")

    monkeypatch.setattr("agent.wire.strict_json.json.loads", must_not_parse)
    try:
        parse_json((opener * depth).encode())
    except MalformedJson as exc:
        assert "too deep" in str(exc)
    else:
        raise AssertionError("accepted")


@settings(max_examples=300, deadline=None)
@given(nested.map(json.dumps), st.integers(0, 6))
def test_brackets_and_quotes_inside_strings_do_not_count_as_nesting(text, limit):
    # A string full of "[" or an escaped quote must neither refuse a flat document nor
    # let a deep one through: the verdict is the walk's over the parsed value.
    deep = _depth(json.loads(text)) > limit
    try:
        parse_json(text, max_depth=limit)
    except MalformedJson:
        assert deep
    else:
        assert not deep
