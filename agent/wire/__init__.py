"""The public wire contract, owned here once for the agent and the centre.

What a consumer in another language must reproduce lives in this package and in
docs/protocol.md; `central/` imports nothing else of `agent`. Nothing here does I/O
except the key files (`key_files`) and paho's set-up (`agent.wire.mqtt`, imported on
its own); the rest keeps no state besides what a caller hands it.

- `encoding`: canonical bytes, base64url, chain hashes, the errors (`WireError` and
  its kinds `SignatureError`, `MalformedJson`);
- `strict_json`: the one strict JSON reader (duplicate keys, floats, depth, UTF-8);
- `signing`: Ed25519 keys and the signing rule of every signed document;
- `key_files`: private key files (0600, never overwritten) and public keys;
- `envelope`: build, parse and verify one event envelope;
- `chain`: `ChainVerifier`, the one streaming chain verifier, and `verify_chain`;
- `topics`: MQTT topics in both directions;
- `commands`: signed commands and policies, and the bounds both ends keep.
"""

from agent.wire.chain import (
    BadSignature,
    BrokenLink,
    ChainFailure,
    ChainReport,
    ChainVerifier,
    Duplicate,
    Failure,
    Fork,
    Malformed,
    Missing,
    Outcome,
    UnknownDevice,
    Verified,
    WrongDevice,
    verify_chain,
)
from agent.wire.commands import (
    COMMAND_FIELDS,
    COMMAND_MAX_BYTES,
    COMMAND_MAX_VALIDITY_MS,
    COMMAND_NAMES,
    NAME_PATTERN,
    NONCE_PATTERN,
    build_command,
    open_signed_policy,
    sign_policy,
)
from agent.wire.encoding import (
    GENESIS_PREV,
    MAX_DEPTH,
    MAX_SAFE_INT,
    MalformedJson,
    SignatureError,
    WireError,
    b64u,
    b64u_decode,
    canonical,
    chain_hash,
    first_problem,
    reject_floats,
)
from agent.wire.envelope import (
    CATEGORIES,
    ENVELOPE_FIELDS,
    ENVELOPE_VERSION,
    SEVERITIES,
    Envelope,
    build_envelope,
    check_shape,
    envelope_hash,
    parse_envelope,
    verify_envelope,
)
from agent.wire.key_files import KeyFileError, read_key, read_public_key, write_new_key
from agent.wire.signing import SigningKey, VerifyKey, check_signature, sign_document
from agent.wire.strict_json import parse_json, parse_json_object
from agent.wire.topics import (
    DEFAULT_PREFIX,
    Topic,
    category,
    command_filter,
    command_topic,
    event_filter,
    event_topic,
    parse_topic,
    status_filter,
    status_topic,
)

__all__ = [
    "CATEGORIES",
    "COMMAND_FIELDS",
    "COMMAND_MAX_BYTES",
    "COMMAND_MAX_VALIDITY_MS",
    "COMMAND_NAMES",
    "DEFAULT_PREFIX",
    "ENVELOPE_FIELDS",
    "ENVELOPE_VERSION",
    "GENESIS_PREV",
    "MAX_DEPTH",
    "MAX_SAFE_INT",
    "NAME_PATTERN",
    "NONCE_PATTERN",
    "SEVERITIES",
    "BadSignature",
    "BrokenLink",
    "ChainFailure",
    "ChainReport",
    "ChainVerifier",
    "Duplicate",
    "Envelope",
    "Failure",
    "Fork",
    "KeyFileError",
    "Malformed",
    "MalformedJson",
    "Missing",
    "Outcome",
    "SignatureError",
    "SigningKey",
    "Topic",
    "UnknownDevice",
    "Verified",
    "VerifyKey",
    "WireError",
    "WrongDevice",
    "b64u",
    "b64u_decode",
    "build_command",
    "build_envelope",
    "canonical",
    "category",
    "chain_hash",
    "check_shape",
    "check_signature",
    "command_filter",
    "command_topic",
    "envelope_hash",
    "event_filter",
    "event_topic",
    "first_problem",
    "open_signed_policy",
    "parse_envelope",
    "parse_json",
    "parse_json_object",
    "parse_topic",
    "read_key",
    "read_public_key",
    "reject_floats",
    "sign_document",
    "sign_policy",
    "status_filter",
    "status_topic",
    "verify_chain",
    "verify_envelope",
    "write_new_key",
]
