"""The event envelope: what is signed, stored, published and verified.

An envelope is a JSON object with exactly the fields of ENVELOPE_FIELDS (integers only,
no floats anywhere); `sig` signs the canonical bytes of the rest, `prev` is the chain
hash of the previous envelope of the same device (GENESIS_PREV for seq 1). The bytes
that are stored, published and hashed are the canonical bytes including `sig`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agent.wire.encoding import (
    MAX_DEPTH,
    MalformedJson,
    WireError,
    b64u,
    canonical,
    chain_hash,
    reject_floats,
)
from agent.wire.signing import SigningKey, VerifyKey, check_signature
from agent.wire.strict_json import parse_json

ENVELOPE_VERSION: Final = 1
ENVELOPE_FIELDS: Final = frozenset(
    {"v", "device", "boot", "seq", "ts", "mono", "clock_ok", "type", "sev", "data", "prev", "sig"}
)
SEVERITIES: Final = frozenset({"info", "warning", "alarm"})
CATEGORIES: Final = frozenset(
    {"access", "door", "lock", "inventory", "env", "alarm", "policy", "system", "command"}
)
_INTEGERS: Final = ("v", "boot", "seq", "ts", "mono")
_STRINGS: Final = ("device", "type", "sev", "prev", "sig")


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed envelope: the parsed fields and the exact bytes that are stored and sent."""

    fields: Mapping[str, Any]
    payload: bytes  # canonical bytes including sig: what is published and hashed

    @property
    def seq(self) -> int:
        return int(self.fields["seq"])

    @property
    def device(self) -> str:
        return str(self.fields["device"])

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
    """The one way to make envelope bytes: canonicalise, sign, then add `sig`.

    The canonical bytes with `sig` differ from the signed message only by `"sig":"…"`
    where it sorts (`sev` < `sig` < `ts`), so it is spliced in instead of encoding the
    whole envelope a second time (docs/decisions.md, "Sealing an envelope").
    """
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
    reject_floats(unsigned["data"], "data")
    message = canonical(unsigned)
    sig = b64u(key.sign(message))
    signed = {**unsigned, "sig": sig}
    if _all_int(ts, mono, boot, seq) and isinstance(type, str):
        cut = _ts_at(message)
        payload = b"%s%s%s" % (message[:cut], _sig_field(sig), message[cut:])
    else:
        payload = canonical(signed)
    return Envelope(signed, payload)


def _ts_at(canonical_bytes: bytes) -> int:
    # After "ts" come only "type" (a JSON string: inside one every quote is escaped, so
    # `,"` never occurs) and "v", so the last `,"ts":` is the top-level one, provided ts
    # is the integer the contract says. `sig` sorts right before it (`sev` < `sig` < `ts`).
    return canonical_bytes.rindex(b',"ts":')


def _sig_field(sig: str) -> bytes:
    return b',"sig":"%s"' % sig.encode("ascii")


def signed_message(fields: Mapping[str, Any], payload: bytes) -> bytes:
    """The bytes `sig` signs (the canonical bytes of every field but `sig`), taken from
    `payload` = canonical(fields) of a shape-checked envelope whose `sig` is canonical
    base64url: the splice of build_envelope undone, instead of a second encoding."""
    cut = _ts_at(payload)
    start = cut - len(_sig_field(str(fields["sig"])))
    if payload[start:cut] != _sig_field(str(fields["sig"])):  # cannot happen: defence in depth
        return canonical({k: v for k, v in fields.items() if k != "sig"})
    return payload[:start] + payload[cut:]


def _all_int(*values: object) -> bool:
    return all(type(v) is int for v in values)


def parse_envelope(payload: bytes | str) -> dict[str, Any]:
    """Parse (strictly) and shape-check one envelope, not its signature; raise WireError."""
    obj = parse_json(payload, max_depth=MAX_DEPTH + 1)  # `data` is one level down
    if not isinstance(obj, dict):
        raise MalformedJson("not a JSON object")
    # parse_json already refused floats and nesting past MAX_DEPTH (and JSON keys are
    # strings): what reject_floats would look for in `data` cannot be there.
    _check_fields(obj)
    return obj


def check_shape(obj: Mapping[str, Any]) -> None:
    """Raise WireError unless `obj` has exactly the envelope's fields, each of its type."""
    _check_fields(obj)
    reject_floats(obj["data"], "data")


def _check_fields(obj: Mapping[str, Any]) -> None:
    keys = set(obj)
    if keys != ENVELOPE_FIELDS:
        missing, extra = ENVELOPE_FIELDS - keys, keys - ENVELOPE_FIELDS
        raise WireError(f"fields: missing {sorted(missing)} unexpected {sorted(extra)}")
    for name in _INTEGERS:
        if type(obj[name]) is not int:
            raise WireError(f"{name} must be an integer")
    if obj["v"] != ENVELOPE_VERSION:
        raise WireError(f"unknown envelope version {obj['v']}")
    if obj["seq"] < 1:
        raise WireError("seq must be >= 1")
    if type(obj["clock_ok"]) is not bool:
        raise WireError("clock_ok must be a boolean")
    for name in _STRINGS:
        if not isinstance(obj[name], str):
            raise WireError(f"{name} must be a string")
    if obj["sev"] not in SEVERITIES:
        raise WireError(f"unknown sev {obj['sev']!r}")
    if not isinstance(obj["data"], dict):
        raise WireError("data must be an object")


def verify_envelope(envelope: Mapping[str, Any], key: VerifyKey) -> None:
    """Check one envelope's signature; raise SignatureError if it fails."""
    check_signature(envelope, key)


def envelope_hash(envelope: Mapping[str, Any]) -> str:
    """The chain hash of a parsed envelope (what the next one's `prev` must be)."""
    return chain_hash(canonical(envelope))
