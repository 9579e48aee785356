"""Signed commands to one cabinet (docs/protocol.md) and recognising its verified answer.

A command is signed with the central key, names one device, carries a fresh random
nonce and expires (`--ttl`, 300 s by default) so a captured copy cannot be replayed
later. The answer is an event of that device (`command.applied` / `command.rejected`,
or `policy.applied` / `policy.rejected` for a policy), matched by our nonce, and
believed only once its signature verifies with the device's registered key. A matching
answer that does not verify is reported as a forgery and the wait goes on.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.wire import (
    COMMAND_MAX_VALIDITY_MS,
    SigningKey,
    WireError,
    build_command,
    canonical,
    command_topic,
    event_topic,
    parse_envelope,
    verify_envelope,
)
from central.registry import Device

DEFAULT_TTL_S = 300
MAX_TTL_S = COMMAND_MAX_VALIDITY_MS // 1000  # the agent refuses longer (validity_too_long)

ANSWERS = {
    "policy": ("policy.applied", "policy.rejected", "command.rejected"),
}
DEFAULT_ANSWERS = ("command.applied", "command.rejected")


@dataclass(frozen=True)
class IssuedCommand:
    device: Device
    name: str
    nonce: str
    document: Mapping[str, Any]
    topic: str
    answer_topics: tuple[str, ...]

    @property
    def payload(self) -> bytes:
        return canonical(self.document)


def new_nonce() -> str:
    return secrets.token_urlsafe(16)  # 128 random bits: never repeats in practice


def issue(
    device: Device,
    name: str,
    args: Mapping[str, Any],
    key: SigningKey,
    *,
    now_ms: int,
    ttl_s: int = DEFAULT_TTL_S,
    prefix: str = "cabinet",
    nonce: str | None = None,
) -> IssuedCommand:
    nonce = nonce or new_nonce()
    document = build_command(
        device=device.id,
        name=name,
        args=args,
        nonce=nonce,
        issued_at_ms=now_ms,
        expires_at_ms=now_ms + ttl_s * 1000,
        key=key,
    )
    answers = ANSWERS.get(name, DEFAULT_ANSWERS)
    topics = tuple(sorted({event_topic(prefix, device.site, device.id, t) for t in answers}))
    return IssuedCommand(
        device, name, nonce, document, command_topic(prefix, device.site, device.id, name), topics
    )


@dataclass(frozen=True)
class Answer:
    applied: bool
    type: str
    seq: int
    data: Mapping[str, Any]

    def describe(self) -> str:
        reason = self.data.get("reason")
        extra = f" (policy version {self.data['version']})" if "version" in self.data else ""
        verdict = "applied" if self.applied else "REJECTED"
        why = f": {reason}" if reason and not self.applied else ""
        return f"{verdict}{extra}{why} [{self.type} seq {self.seq}]"


@dataclass
class AnswerWatch:
    """Fed what arrives on the answer topics; says when our verified answer is there."""

    command: IssuedCommand
    forgeries: list[str] = field(default_factory=list)

    def feed(self, topic: str, payload: bytes) -> Answer | None:
        try:
            env = parse_envelope(payload)
        except WireError:
            return None  # not an envelope at all: not an answer to anything
        data = env["data"]
        if data.get("nonce") != self.command.nonce:
            return None
        if env["type"] not in ANSWERS.get(self.command.name, DEFAULT_ANSWERS):
            return None
        device = self.command.device
        try:
            if env["device"] != device.id:
                raise WireError(f"it claims device {env['device']!r}")
            verify_envelope(env, device.pubkey)
        except WireError as exc:
            self.forgeries.append(
                f"an answer to nonce {self.command.nonce} on {topic} does not verify ({exc})"
            )
            return None
        if env["type"].startswith("command.") and data.get("name") not in (None, self.command.name):
            self.forgeries.append(f"{env['type']} seq {env['seq']} names command {data['name']!r}")
            return None
        return Answer(env["type"].endswith(".applied"), env["type"], int(env["seq"]), data)
