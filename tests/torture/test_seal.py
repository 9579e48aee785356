"""Envelope bytes are made one way, and that way gives exactly the canonical bytes.

`agent.wire.build_envelope` splices `sig` into the signed message instead of encoding
the envelope twice; whatever the data (unicode, nesting, odd keys, floats, odd types),
its payload must be the canonical bytes of its fields and verify, or it must refuse.
The outbox's `Sealer` must give the very same envelope.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent import wire
from agent.seal import Draft, Sealer

KEY = wire.SigningKey.from_seed(bytes(range(32, 64)))

scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text() | st.floats(allow_nan=True)
)
data_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6) | st.integers(0, 3), inner, max_size=4)
    ),
    max_leaves=20,
)
drafts = st.builds(
    Draft,
    type=st.sampled_from(["access.granted", "alarm.raised", "env.reading"]) | st.text(max_size=20),
    sev=st.sampled_from(["info", "warning", "alarm", "fatal"]),
    data=st.dictionaries(st.text(max_size=8), data_values, max_size=6),
    ts=st.integers(0, 2**45) | st.booleans(),
    mono=st.integers(0, 2**40),
    clock_ok=st.booleans() | st.integers(0, 1),
)


def outcome(build: Any) -> tuple[str, Any]:
    try:
        envelope = build()
    except Exception as exc:  # compared, not swallowed: both paths must fail alike
        return "error", type(exc).__name__
    return "ok", (envelope.payload, dict(envelope.fields))


@settings(max_examples=600, deadline=None, database=None)
@given(
    draft=drafts,
    seq=st.integers(1, 2**40),
    prev=st.just(wire.GENESIS_PREV) | st.text(max_size=12),
    device=st.sampled_from(["cab-chem-0042", "cab-é"]),
    boot=st.integers(1, 10_000),
)
def test_an_envelope_is_its_canonical_bytes_or_a_refusal_and_the_sealer_agrees(
    draft: Draft, seq: int, prev: str, device: str, boot: int
) -> None:
    built = outcome(
        lambda: wire.build_envelope(
            device=device,
            boot=boot,
            seq=seq,
            ts=draft.ts,
            mono=draft.mono,
            clock_ok=draft.clock_ok,
            type=draft.type,
            sev=draft.sev,
            data=draft.data,
            prev=prev,
            key=KEY,
        )
    )
    assert outcome(lambda: Sealer(device, boot, KEY).seal(draft, seq, prev)) == built
    if built[0] == "error":
        assert built[1] == "WireError"
        return
    payload, fields = built[1]
    assert payload == wire.canonical(fields)
    wire.check_signature(wire.parse_json(payload), KEY.public)
