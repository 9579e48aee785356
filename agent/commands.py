"""Signed commands from the centre (docs/protocol.md, "Commands"): verify, then hand to the core.

`CommandVerifier.check` turns one MQTT message into exactly one input for the core:
`CommandReceived`, `PolicyLoaded` or `CommandRejected(reason)`. It never raises on
input: whatever arrives on the command topic (not JSON, huge, deep, wrong types,
forged, replayed) becomes a rejection with a short machine-readable reason, and only a
command that passed every check consumes its nonce. The rules decide what a valid
command means (policy version order, pending person, alarm id); this module decides
only whether the centre really sent it, to this device, recently, once.

Policy persistence lives here too because it is the same trust boundary: the file on
disk is the signed document as received, re-verified at every start.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Final

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from agent import wire
from agent.nonces import NonceStore
from config.policy import Policy
from rules.command_args import COMMANDS, BadArgs, parse_command, readable_ids
from rules.inputs import CommandReceived, CommandRejected, PolicyLoaded

log = structlog.get_logger("commands")

Verdict = CommandReceived | PolicyLoaded | CommandRejected

COMMAND_FIELDS: Final = wire.COMMAND_FIELDS
POLICY_FILE: Final = "policy.json"
PURGE_EVERY_MS: Final = 10 * 60 * 1000
MAX_VALIDITY_MS: Final = wire.COMMAND_MAX_VALIDITY_MS
_NAME_RE: Final = wire.NAME_PATTERN
_NONCE_RE: Final = wire.NONCE_PATTERN


class PolicyArgs(BaseModel):
    """`policy`'s args: the signed policy document, opened by `open_policy`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    policy: dict[str, Any]


assert {*COMMANDS, "policy"} == wire.COMMAND_NAMES


class _Refused(Exception):
    """Internal control flow: one check failed; `reason` goes on the wire."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.named: dict[str, Any] = {}  # readable ids of a signed command's args


PolicyRefused = _Refused  # what `open_policy` raises, for callers outside this module


# --- the verifier ------------------------------------------------------------------------


class CommandVerifier:
    def __init__(
        self,
        device: str,
        central_key: wire.VerifyKey,
        nonces: NonceStore,
        max_payload: int = wire.COMMAND_MAX_BYTES,
    ) -> None:
        self.device = device
        self.central_key = central_key
        self.nonces = nonces
        self.max_payload = max_payload
        self._last_purge_ms = 0

    def check(self, topic: str, payload: bytes, now_ms: int) -> Verdict:
        name, nonce = "?", ""
        try:
            doc = self._parse(payload)
            name, nonce = _safe(doc.get("name"), _NAME_RE, "?"), _safe(doc.get("nonce"), _NONCE_RE)
            verdict = self._verify(doc, topic, now_ms)
        except _Refused as refused:
            log.warning("command.rejected", name=name, nonce=nonce, reason=refused.reason)
            return CommandRejected(
                name=name, nonce=nonce, reason=refused.reason, named=refused.named
            )
        except sqlite3.Error as exc:
            # The nonce store is unusable: refuse rather than risk accepting a replay.
            log.error("command.nonce_store_failed", name=name, error=str(exc))
            return CommandRejected(name=name, nonce=nonce, reason="internal_error")
        log.info("command.verified", name=name, nonce=nonce)
        return verdict

    def _parse(self, payload: bytes) -> dict[str, Any]:
        if len(payload) > self.max_payload:
            raise _Refused("too_large")
        try:
            # The contract's strict reader: UTF-8 only, no duplicate keys (the signature
            # covers one reading of the text), no floats, bounded depth.
            doc = wire.parse_json_object(payload)
        except wire.MalformedJson as exc:
            log.debug("command.unparseable", error=str(exc)[:80])
            raise _Refused("malformed") from None
        # An integer beyond 2^53 can never be a valid time or mass, and no SQLite column
        # holds 2^70: malformed now rather than a crash wherever it is stored later.
        if wire.first_problem(doc, max_int=wire.MAX_SAFE_INT) is not None:
            raise _Refused("malformed")
        return doc

    def _verify(self, doc: dict[str, Any], topic: str, now_ms: int) -> Verdict:
        if set(doc) != COMMAND_FIELDS:
            raise _Refused("malformed")
        for key in ("v", "issued_at_ms", "expires_at_ms"):
            if type(doc[key]) is not int:
                raise _Refused("malformed")
        for key in ("device", "name", "nonce", "sig"):
            if not isinstance(doc[key], str):
                raise _Refused("malformed")
        if doc["v"] != 1 or not isinstance(doc["args"], dict):
            raise _Refused("malformed")
        if not _NONCE_RE.match(doc["nonce"]) or doc["issued_at_ms"] > doc["expires_at_ms"]:
            raise _Refused("malformed")
        # Nothing about an unsigned command is believed, so the signature comes first.
        try:
            wire.check_signature(doc, self.central_key)
        except wire.WireError:
            raise _Refused("bad_signature") from None
        try:
            return self._verify_signed(doc, topic, now_ms)
        except _Refused as refused:
            # The centre really sent it: the refusal keeps whom its args name (who asked,
            # for whom), as far as they can be read, even when they are not valid args.
            refused.named = readable_ids(doc["args"])
            raise

    def _verify_signed(self, doc: dict[str, Any], topic: str, now_ms: int) -> Verdict:
        if doc["device"] != self.device:
            raise _Refused("wrong_device")
        # The topic is not signed: a genuine `ack` re-published on cmd/policy is refused.
        if topic.rsplit("/", 1)[-1] != doc["name"]:
            raise _Refused("topic_mismatch")
        name: str = doc["name"]
        if name not in wire.COMMAND_NAMES:
            raise _Refused("unknown_command")
        if now_ms > doc["expires_at_ms"]:
            raise _Refused("expired")
        if doc["expires_at_ms"] - max(now_ms, doc["issued_at_ms"]) > MAX_VALIDITY_MS:
            raise _Refused("validity_too_long")
        self._purge(now_ms)
        if self.nonces.seen(doc["nonce"]):
            raise _Refused("replayed_nonce")
        verdict: Verdict
        try:
            if name == "policy":
                verdict = self._policy(PolicyArgs.model_validate(doc["args"]).policy, doc["nonce"])
            else:
                verdict = CommandReceived(parse_command(name, doc["args"]), doc["nonce"])
        except (ValidationError, BadArgs):
            raise _Refused("bad_args") from None
        # Consumed only now, after every check passed; the insert is the atomic test.
        if not self.nonces.remember(doc["nonce"], doc["expires_at_ms"]):
            raise _Refused("replayed_nonce")
        return verdict

    def _policy(self, document: dict[str, Any], nonce: str) -> PolicyLoaded:
        policy = open_policy(document, self.central_key)
        return PolicyLoaded(policy=policy, document=document, source="command", nonce=nonce)

    def _purge(self, now_ms: int) -> None:
        if now_ms - self._last_purge_ms >= PURGE_EVERY_MS:
            self._last_purge_ms = now_ms
            self.nonces.purge(now_ms)


def open_policy(document: Any, central_key: wire.VerifyKey) -> Policy:
    """Verify a signed policy and validate it; raise _Refused with the reason."""
    try:
        inner = wire.open_signed_policy(document, central_key)
    except wire.SignatureError:
        raise _Refused("bad_policy_signature") from None
    except wire.WireError:
        raise _Refused("invalid_policy") from None
    try:
        return Policy.model_validate(inner)
    except ValidationError:
        raise _Refused("invalid_policy") from None


def _safe(value: object, pattern: re.Pattern[str], default: str = "") -> str:
    """Echo an unverified name/nonce into a signed event only if it is short and plain."""
    return value if isinstance(value, str) and pattern.match(value) else default


# --- the persisted policy ----------------------------------------------------------------


def persist_policy(state_dir: Path, document: dict[str, Any]) -> Path:
    """Write the accepted signed policy atomically: temp file, fsync, rename, fsync dir.

    After a power cut the file is either the old policy or the new one, never a mix.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / POLICY_FILE
    temp = state_dir / f".{POLICY_FILE}.{os.getpid()}.tmp"
    data = wire.canonical(document)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, target)
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # makes the rename itself durable
    finally:
        os.close(dir_fd)
    log.info("policy.persisted", path=str(target), bytes=len(data))
    return target


def load_persisted_policy(
    state_dir: Path, central_key: wire.VerifyKey
) -> tuple[Policy, dict[str, Any]] | None:
    """The last accepted policy, re-verified; None if there is none or it does not verify.

    A file that fails verification (tampered, or signed by a previous central key) is
    not enforced: the cabinet then has no policy and denies every badge (fail-secure).
    """
    for stale in state_dir.glob(f".{POLICY_FILE}.*.tmp"):
        stale.unlink(missing_ok=True)  # a write interrupted by a power cut
    path = state_dir / POLICY_FILE
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("policy.persisted_unreadable", path=str(path), error=type(exc).__name__)
        return None
    try:
        policy = open_policy(document, central_key)
    except _Refused as refused:
        log.error("policy.persisted_invalid", path=str(path), reason=refused.reason)
        return None
    return policy, document


def now_ms() -> int:
    return time.time_ns() // 1_000_000
