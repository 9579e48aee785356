"""The worked example in docs/protocol.md is checked byte for byte, so it cannot drift."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from agent.wire import (
    GENESIS_PREV,
    SigningKey,
    b64u,
    b64u_decode,
    build_envelope,
    canonical,
    chain_hash,
    verify_chain,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")


def block(tag: str) -> str:
    match = re.search(rf"```{re.escape(tag)}\n(.*?)\n```", DOC, re.S)
    assert match, f"docs/protocol.md lost its `{tag}` block"
    return match.group(1).strip()


def test_worked_example_bytes_match_the_implementation() -> None:
    key = SigningKey.from_seed(b64u_decode(block("seed")))
    assert key.public.to_text() == block("pubkey")
    envelope = json.loads(block("envelope"))
    unsigned = {k: v for k, v in envelope.items() if k != "sig"}
    assert canonical(unsigned).decode() == block("unsigned")
    rebuilt = build_envelope(key=key, **{k: v for k, v in unsigned.items() if k != "v"})
    assert rebuilt.fields["sig"] == block("sig")
    assert rebuilt.payload.decode() == block("envelope")
    assert rebuilt.hash == block("next-prev")
    assert b64u(hashlib.sha256(block("envelope").encode()).digest()) == block("next-prev")


def test_worked_example_chain_verifies_and_starts_at_the_empty_string_hash() -> None:
    first, second = json.loads(block("envelope")), json.loads(block("envelope-2"))
    assert first["prev"] == GENESIS_PREV == b64u(hashlib.sha256(b"").digest())
    assert second["prev"] == chain_hash(block("envelope").encode())
    key = SigningKey.from_seed(b64u_decode(block("seed"))).public
    assert verify_chain([first, second], key).ok
