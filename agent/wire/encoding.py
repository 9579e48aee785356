"""Bytes on the wire: canonical JSON, base64url, chain hashes, and the contract's errors.

Every hash, key and signature travels as unpadded base64url; every signed document is
signed over its canonical bytes (sorted keys, no spaces, UTF-8 rather than \\u escapes);
numbers are integers only, so a consumer in any language reproduces the bytes exactly.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

# Deeper than any real document (a policy command nests ~8 deep); a bound keeps a
# hostile payload from costing recursion or time.
MAX_DEPTH: Final = 32
# The largest integer every JSON reader keeps exactly; nothing on the wire is larger.
MAX_SAFE_INT: Final = 2**53 - 1


class WireError(ValueError):
    """A document, key or topic that does not satisfy the contract; `str()` says why."""


class SignatureError(WireError):
    """The signature is missing, not base64url, or does not verify with the key."""


class MalformedJson(WireError):
    """Not strict JSON: bad UTF-8 or syntax, a duplicate key, a float, too deep."""


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
    """The canonical bytes: sorted keys, no spaces, UTF-8 (not \\u escapes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


GENESIS_PREV: Final = b64u(hashlib.sha256(b"").digest())


def chain_hash(signed_canonical: bytes) -> str:
    """`prev` of the next envelope: SHA-256 of this envelope's canonical bytes with `sig`."""
    return b64u(hashlib.sha256(signed_canonical).digest())


def reject_floats(value: Any, where: str) -> None:
    """Refuse what has no canonical form: floats, non-string keys, nesting past MAX_DEPTH."""
    problem = first_problem(value)
    if problem is not None:
        raise WireError(where + problem)


def first_problem(
    value: Any, depth: int = 0, limit: int = MAX_DEPTH, max_int: int | None = None
) -> str | None:
    """Where `value` has no canonical form (`.key[i]: why`), or None: the one walker.

    `max_int` also refuses integers beyond it: a command's numbers must fit every JSON
    reader and every SQLite column (MAX_SAFE_INT), while an auditor's reader of envelopes
    keeps integers of any size (None).
    """
    # On every envelope's hot path: exact type checks first, and the path to a problem
    # is only spelt out (".key", "[i]") on the way back from one.
    if depth > limit:
        return ": nested too deep"
    kind = type(value)
    if kind is int:
        if max_int is not None and not -max_int <= value <= max_int:
            return ": integer out of range"
        return None
    if kind is str or kind is bool or value is None:
        return None
    if isinstance(value, float):
        return ": floats are not allowed on the wire"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return ": keys must be strings"
            problem = first_problem(item, depth + 1, limit, max_int)
            if problem is not None:
                return f".{key}{problem}"
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = first_problem(item, depth + 1, limit, max_int)
            if problem is not None:
                return f"[{index}]{problem}"
    return None
