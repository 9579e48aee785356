"""The public wire contract (DESIGN.md §4.1, §4.2, §4.5): envelopes, signatures, chain, topics.

Everything a consumer in another language must reproduce lives here and in
docs/protocol.md. This module does no I/O and keeps no state besides what a caller
hands it, so the agent, `cabinetctl` and the tests share one implementation.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import nacl.exceptions
import nacl.signing

ENVELOPE_VERSION: Final = 1
ENVELOPE_FIELDS: Final = frozenset(
    {"v", "device", "boot", "seq", "ts", "mono", "clock_ok", "type", "sev", "data", "prev", "sig"}
)
SEVERITIES: Final = frozenset({"info", "warning", "alarm"})
CATEGORIES: Final = frozenset(
    {"access", "door", "lock", "inventory", "env", "alarm", "policy", "system", "command"}
)
DEFAULT_PREFIX: Final = "cabinet"


class WireError(ValueError):
    """An envelope, command or key that does not satisfy the contract; `str()` says why."""


# --- encodings --------------------------------------------------------------------------


def b64u(raw: bytes) -> str:
    """base64url without padding, as every hash, key and signature on the wire."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    if not isinstance(text, str) or not text or "=" in text:
        raise WireError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise WireError("not unpadded base64url") from exc
    # The last character carries unused low bits: 'Q' and 'S' can decode to the same
    # bytes. Only the one canonical spelling is accepted, so a signature or hash has
    # exactly one text form and a flipped character is always caught.
    if b64u(raw) != text:
        raise WireError("not canonical base64url")
    return raw


def canonical(obj: Mapping[str, Any]) -> bytes:
    """The canonical bytes of §4.1: sorted keys, no spaces, UTF-8 (not \\u escapes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


GENESIS_PREV: Final = b64u(hashlib.sha256(b"").digest())


def chain_hash(signed_canonical: bytes) -> str:
    """`prev` of the next envelope: SHA-256 of this envelope's canonical bytes with `sig`."""
    return b64u(hashlib.sha256(signed_canonical).digest())


# --- keys -------------------------------------------------------------------------------


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


# --- signed documents (envelopes, commands, policies share the same rule) --------------


def sign_document(unsigned: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """Return a copy with `sig` = Ed25519 over the canonical bytes of everything else."""
    if "sig" in unsigned:
        raise WireError("document already has a sig")
    signed = dict(unsigned)
    signed["sig"] = b64u(key.sign(canonical(unsigned)))
    return signed


def check_signature(document: Mapping[str, Any], key: VerifyKey) -> None:
    sig = document.get("sig")
    if not isinstance(sig, str):
        raise WireError("missing sig")
    body = {k: v for k, v in document.items() if k != "sig"}
    if not key.verify(canonical(body), b64u_decode(sig)):
        raise WireError("bad signature")


# --- envelopes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed envelope: the parsed fields and the exact bytes that are stored and sent."""

    fields: Mapping[str, Any]
    payload: bytes  # canonical bytes including sig: what is published and hashed

    @property
    def seq(self) -> int:
        return int(self.fields["seq"])

    @property
    def type(self) -> str:
        return str(self.fields["type"])

    @property
    def hash(self) -> str:
        return chain_hash(self.payload)


def build_envelope(
    *,
    device: str,
    boot: int,
    seq: int,
    ts: int,
    mono: int,
    clock_ok: bool,
    type: str,
    sev: str,
    data: Mapping[str, Any],
    prev: str,
    key: SigningKey,
) -> Envelope:
    if sev not in SEVERITIES:
        raise WireError(f"sev {sev!r} is not one of {sorted(SEVERITIES)}")
    unsigned: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "device": device,
        "boot": boot,
        "seq": seq,
        "ts": ts,
        "mono": mono,
        "clock_ok": clock_ok,
        "type": type,
        "sev": sev,
        "data": dict(data),
        "prev": prev,
    }
    _reject_floats(unsigned["data"], "data")
    signed = sign_document(unsigned, key)
    return Envelope(signed, canonical(signed))


def _reject_floats(value: Any, where: str, depth: int = 0) -> None:
    # §4.1: integers only, so every language reproduces the canonical bytes exactly.
    if depth > 32:
        raise WireError(f"{where}: nested too deep")
    if isinstance(value, float):
        raise WireError(f"{where}: floats are not allowed on the wire")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise WireError(f"{where}: keys must be strings")
            _reject_floats(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _reject_floats(v, f"{where}[{i}]", depth + 1)


def parse_envelope(payload: bytes | str) -> dict[str, Any]:
    """Parse and shape-check one envelope (not its signature); raise WireError with why."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise WireError("not a JSON object")
    keys = set(obj)
    if keys != ENVELOPE_FIELDS:
        missing, extra = ENVELOPE_FIELDS - keys, keys - ENVELOPE_FIELDS
        raise WireError(f"fields: missing {sorted(missing)} unexpected {sorted(extra)}")
    ints = ("v", "boot", "seq", "ts", "mono")
    for name in ints:
        if type(obj[name]) is not int:
            raise WireError(f"{name} must be an integer")
    if obj["v"] != ENVELOPE_VERSION:
        raise WireError(f"unknown envelope version {obj['v']}")
    if obj["seq"] < 1:
        raise WireError("seq must be >= 1")
    if type(obj["clock_ok"]) is not bool:
        raise WireError("clock_ok must be a boolean")
    for name in ("device", "type", "sev", "prev", "sig"):
        if not isinstance(obj[name], str):
            raise WireError(f"{name} must be a string")
    if obj["sev"] not in SEVERITIES:
        raise WireError(f"unknown sev {obj['sev']!r}")
    if not isinstance(obj["data"], dict):
        raise WireError("data must be an object")
    _reject_floats(obj["data"], "data")
    return obj


def verify_envelope(envelope: Mapping[str, Any], key: VerifyKey) -> None:
    """Check one envelope's signature; raise WireError('bad signature') if it fails."""
    check_signature(envelope, key)


def envelope_hash(envelope: Mapping[str, Any]) -> str:
    return chain_hash(canonical(envelope))


# --- topics (§4.2) ----------------------------------------------------------------------


def category(event_type: str) -> str:
    return event_type.split(".", 1)[0]


def event_topic(prefix: str, site: str, device: str, event_type: str) -> str:
    return f"{prefix}/{site}/{device}/evt/{category(event_type)}"


def status_topic(prefix: str, site: str, device: str) -> str:
    return f"{prefix}/{site}/{device}/status"


def command_topic(prefix: str, site: str, device: str, name: str) -> str:
    return f"{prefix}/{site}/{device}/cmd/{name}"


def command_filter(prefix: str, site: str, device: str) -> str:
    return f"{prefix}/{site}/{device}/cmd/+"


# --- chain verification (used by `cabinetctl verify` and `watch`) -----------------------


@dataclass
class ChainFailure:
    device: str
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"device {self.device} seq {self.seq}: {self.reason}"


@dataclass
class ChainReport:
    events: int
    devices: int
    failures: list[ChainFailure]
    shed: int = 0  # seqs missing but covered by a signed system.outbox_dropped
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # first, last seq

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_chain(
    envelopes: Iterable[Mapping[str, Any]],
    keys: Mapping[str, VerifyKey] | VerifyKey,
) -> ChainReport:
    """Check signatures, `prev` links and seq contiguity per device.

    Duplicates of the same (device, seq) are allowed if byte-identical (at-least-once
    delivery). A seq gap is accepted only where a validly signed `system.outbox_dropped`
    of the same device names that range: the device attests it shed that telemetry, and
    the link across the gap cannot be checked (its hash is not on the wire).
    """
    per_device: dict[str, dict[int, Mapping[str, Any]]] = {}
    invalid: dict[str, set[int]] = {}  # seqs already reported (bad signature, ...)
    failures: list[ChainFailure] = []
    count = 0
    for env in envelopes:
        count += 1
        device, seq = str(env.get("device")), env.get("seq")
        if not isinstance(seq, int):
            failures.append(ChainFailure(device, -1, "seq is not an integer"))
            continue
        key = keys if isinstance(keys, VerifyKey) else keys.get(device)
        if key is None:
            failures.append(ChainFailure(device, seq, "unknown device"))
            continue
        try:
            verify_envelope(env, key)
        except WireError as exc:
            failures.append(ChainFailure(device, seq, str(exc)))
            invalid.setdefault(device, set()).add(seq)
            continue
        seen = per_device.setdefault(device, {})
        if seq in seen:
            if canonical(seen[seq]) != canonical(env):
                failures.append(ChainFailure(device, seq, "two different envelopes share seq"))
            continue
        seen[seq] = env
    shed = 0
    spans: dict[str, tuple[int, int]] = {}
    for device, by_seq in per_device.items():
        dropped = _dropped_ranges(by_seq.values())
        seqs = sorted(by_seq)
        spans[device] = (seqs[0], seqs[-1])
        # A capture may start after seq 1 (retention, a live window): its first
        # envelope has nothing to link to. From seq 1 on, the genesis hash applies.
        prev_seq, prev_hash = (0, GENESIS_PREV) if seqs[0] == 1 else (None, "")
        if seqs[0] > 1 and all(any(lo <= s <= hi for lo, hi in dropped) for s in range(1, seqs[0])):
            shed += seqs[0] - 1  # the record's head was shed telemetry, and says so
        for seq in seqs:
            env = by_seq[seq]
            if prev_seq is not None and seq != prev_seq + 1:
                gap = range(prev_seq + 1, seq)
                bad = invalid.get(device, set())
                if all(any(lo <= s <= hi for lo, hi in dropped) for s in gap):
                    shed += len(gap)
                elif not all(s in bad for s in gap):
                    failures.append(
                        ChainFailure(device, gap.start, f"missing seq {gap.start}..{gap.stop - 1}")
                    )
            elif prev_seq is not None and env["prev"] != prev_hash:
                failures.append(
                    ChainFailure(device, seq, "prev does not match the previous envelope")
                )
            prev_seq, prev_hash = seq, envelope_hash(env)
    failures.sort(key=lambda f: (f.device, f.seq))
    return ChainReport(count, len(per_device), failures, shed, spans)


def _dropped_ranges(envelopes: Iterable[Mapping[str, Any]]) -> list[tuple[int, int]]:
    ranges = []
    for env in envelopes:
        if env.get("type") == "system.outbox_dropped":
            data = env.get("data", {})
            lo, hi = data.get("from_seq"), data.get("to_seq")
            if isinstance(lo, int) and isinstance(hi, int):
                ranges.append((lo, hi))
    return ranges


# --- signed policies and commands (§4.4, §4.5) ------------------------------------------

COMMAND_NAMES: Final = frozenset(
    {
        "policy",
        "approve",
        "approve_withdrawal",
        "approve_disposal",
        "ack",
        "resolve",
        "stocktake",
        "snapshot",
        "resend",
    }
)


def sign_policy(policy_document: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """The signed policy JSON `cabinetctl policy sign` writes and the agent accepts."""
    _reject_floats(policy_document, "policy")
    return sign_document({"v": 1, "type": "policy", "policy": dict(policy_document)}, key)


def open_signed_policy(document: Any, key: VerifyKey) -> dict[str, Any]:
    """Check a signed policy's shape and signature; return the inner policy document."""
    if not isinstance(document, dict):
        raise WireError("signed policy is not a JSON object")
    if set(document) != {"v", "type", "policy", "sig"}:
        raise WireError("signed policy must have exactly v, type, policy, sig")
    if document["v"] != 1 or document["type"] != "policy":
        raise WireError("not a version 1 signed policy")
    if not isinstance(document["policy"], dict):
        raise WireError("policy must be an object")
    _reject_floats(document["policy"], "policy")
    check_signature(document, key)
    return dict(document["policy"])


def build_command(
    *,
    device: str,
    name: str,
    args: Mapping[str, Any],
    nonce: str,
    issued_at_ms: int,
    expires_at_ms: int,
    key: SigningKey,
) -> dict[str, Any]:
    """A signed command (§4.5) as the centre sends it."""
    if name not in COMMAND_NAMES:
        raise WireError(f"unknown command {name!r}")
    unsigned = {
        "v": 1,
        "device": device,
        "name": name,
        "nonce": nonce,
        "issued_at_ms": issued_at_ms,
        "expires_at_ms": expires_at_ms,
        "args": dict(args),
    }
    _reject_floats(unsigned, "command")
    return sign_document(unsigned, key)
