"""Ed25519 keys and the one signing rule every signed document shares.

A signed document (envelope, command, signed policy) is a JSON object whose `sig` is the
Ed25519 signature, base64url, over the canonical bytes of every other field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing

from agent.wire.encoding import SignatureError, WireError, b64u, b64u_decode, canonical


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key (the 32-byte seed) and its public half."""

    _key: nacl.signing.SigningKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        if len(seed) != 32:
            raise WireError("an Ed25519 seed is 32 bytes")
        return cls(nacl.signing.SigningKey(seed))

    @classmethod
    def from_text(cls, text: str) -> SigningKey:
        """Parse a key file's text: one line, base64url of the 32-byte seed."""
        return cls.from_seed(b64u_decode(text.strip()))

    def to_text(self) -> str:
        return b64u(bytes(self._key)) + "\n"

    @property
    def public(self) -> VerifyKey:
        return VerifyKey(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


@dataclass(frozen=True)
class VerifyKey:
    _key: nacl.signing.VerifyKey = field(repr=False)

    @classmethod
    def from_text(cls, text: str) -> VerifyKey:
        """Accept `<base64url>` or the `pubkey <base64url>` line keygen prints."""
        text = text.strip()
        if text.startswith("pubkey "):
            text = text[len("pubkey ") :].strip()
        raw = b64u_decode(text)
        if len(raw) != 32:
            raise WireError("an Ed25519 public key is 32 bytes")
        return cls(nacl.signing.VerifyKey(raw))

    def to_text(self) -> str:
        return b64u(bytes(self._key))

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return True


def sign_document(unsigned: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """Return a copy with `sig` = Ed25519 over the canonical bytes of everything else."""
    if "sig" in unsigned:
        raise WireError("document already has a sig")
    signed = dict(unsigned)
    signed["sig"] = b64u(key.sign(canonical(unsigned)))
    return signed


def check_signature(
    document: Mapping[str, Any], key: VerifyKey, *, message: bytes | None = None
) -> None:
    """Raise SignatureError unless `sig` verifies over the rest of `document`.

    `message`: the canonical bytes of the rest, when the caller already made them
    (agent.wire.envelope.signed_message); otherwise they are encoded here."""
    sig = document.get("sig")
    if not isinstance(sig, str):
        raise SignatureError("missing sig")
    try:
        signature = b64u_decode(sig)
    except WireError as exc:
        raise SignatureError(f"sig is {exc}") from None
    if message is None:
        message = canonical({k: v for k, v in document.items() if k != "sig"})
    if not key.verify(message, signature):
        raise SignatureError("bad signature")
