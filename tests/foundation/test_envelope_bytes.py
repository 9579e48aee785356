"""The verifier encodes an envelope once: the signed message it cuts out of the canonical
bytes is exactly what a second encoding would give, whatever `data` and `type` hold."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.wire import GENESIS_PREV, BadSignature, ChainVerifier, build_envelope, canonical
from agent.wire import parse_envelope as parse
from agent.wire.envelope import signed_message
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
