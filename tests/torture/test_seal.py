"""The outbox's fast sealer must produce the reference envelope byte for byte.

`agent.seal.Sealer` rebuilds the canonical text of §4.1 from a template instead of
calling `agent.wire.build_envelope`; Ed25519 signatures are deterministic, so any
difference in the bytes signed would show as a different payload. Whatever the data
(unicode, nesting, odd keys, floats), both must give the same bytes or both refuse.
"""

from __future__ import annotations

from typing import Any

import nacl.bindings
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import wire
from agent.seal import Draft, Sealer, _gil_holding_signer, chain_hash

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
def test_the_fast_sealer_gives_the_reference_bytes_or_the_same_refusal(
    draft: Draft, seq: int, prev: str, device: str, boot: int
) -> None:
    sealer = Sealer(device, boot, KEY)
    assert sealer.fast, "the canary disagreed: the fast path is off"
    fast = outcome(lambda: sealer.seal(draft, seq, prev))
    reference = outcome(
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
    assert fast == reference
    well_typed = type(draft.clock_ok) is bool and type(draft.ts) is int
    if fast[0] == "ok" and well_typed:
        payload = fast[1][0]
        assert chain_hash(payload) == wire.chain_hash(payload)
        wire.verify_envelope(wire.parse_envelope(payload), KEY.public)


SECRET = nacl.bindings.crypto_sign_seed_keypair(bytes(range(32, 64)))[1]  # KEY's


def test_the_gil_holding_signer_is_available_on_the_pinned_pynacl() -> None:
    # Without it the outbox silently falls back to PyNaCl's call, which releases the GIL
    # (correct, but lock decisions get slower while the uplink is busy): a PyNaCl upgrade
    # that drops the symbol must show up here, not in a benchmark months later.
    assert _gil_holding_signer(SECRET) is not None


@settings(max_examples=300, deadline=None, database=None)
@given(message=st.binary(max_size=2048))
def test_the_gil_holding_signer_gives_pynacls_signature(message: bytes) -> None:
    sign = _gil_holding_signer(SECRET)
    assert sign is not None
    assert sign(message) == nacl.bindings.crypto_sign(message, SECRET)[:64]
