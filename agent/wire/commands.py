"""Signed commands (downlink) and signed policies: their shape and validity bounds.

A command is `{"v":1,"device","name","nonce","issued_at_ms","expires_at_ms","args","sig"}`
signed with the central key. The bounds below are the contract both sides keep: the
centre never issues what the cabinet would refuse, and the cabinet refuses the rest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from agent.wire.encoding import WireError, reject_floats
from agent.wire.signing import SigningKey, VerifyKey, check_signature, sign_document

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
COMMAND_FIELDS: Final = frozenset(
    {"v", "device", "name", "nonce", "issued_at_ms", "expires_at_ms", "args", "sig"}
)
# A command's nonce is kept until the command expires; a signed command meant to stay
# valid for months would pin its nonce (and be replayable by anyone who kept a copy
# after a nonce-store loss) for that long. Commands are short-lived by design.
COMMAND_MAX_VALIDITY_MS: Final = 7 * 24 * 3600 * 1000
COMMAND_MAX_BYTES: Final = 64 * 1024  # a policy for a large site is ~20 KB
NONCE_PATTERN: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
NAME_PATTERN: Final = re.compile(r"^[a-z_]{1,32}$")


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
    """A signed command as the centre sends it.

    It signs what it is given (tests build expired or over-long commands on purpose);
    a sender that must not issue what the cabinet refuses checks the bounds above.
    """
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
    reject_floats(unsigned, "command")
    return sign_document(unsigned, key)


def sign_policy(policy_document: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """The signed policy JSON `cabinetctl policy sign` writes and the agent accepts."""
    reject_floats(policy_document, "policy")
    return sign_document({"v": 1, "type": "policy", "policy": dict(policy_document)}, key)


def open_signed_policy(document: Any, key: VerifyKey) -> dict[str, Any]:
    """Check a signed policy's shape and signature; return the inner policy document.

    Raises SignatureError if the signature is the problem, WireError for the shape.
    """
    if not isinstance(document, dict):
        raise WireError("signed policy is not a JSON object")
    if set(document) != {"v", "type", "policy", "sig"}:
        raise WireError("signed policy must have exactly v, type, policy, sig")
    if document["v"] != 1 or document["type"] != "policy":
        raise WireError("not a version 1 signed policy")
    if not isinstance(document["policy"], dict):
        raise WireError("policy must be an object")
    reject_floats(document["policy"], "policy")
    check_signature(document, key)
    return dict(document["policy"])
