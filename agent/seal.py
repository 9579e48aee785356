"""Sealing the core's drafts into envelopes: the outbox's side of `wire.build_envelope`.

A `Draft` is an event before it has a seq, a prev and a signature; `Sealer` holds what
every envelope of this run shares (device, boot, key) and seals drafts with the
contract's one builder, so the bytes stored and published are made in one place only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.wire import Envelope, SigningKey, build_envelope, chain_hash

__all__ = ["Draft", "Sealer", "chain_hash"]


@dataclass(frozen=True, slots=True)
class Draft:
    """An event before it has a seq, a prev and a signature."""

    type: str
    sev: str
    data: Mapping[str, Any]
    ts: int
    mono: int
    clock_ok: bool


class Sealer:
    def __init__(self, device: str, boot: int, key: SigningKey) -> None:
        self.device, self.boot, self._key = device, boot, key

    def seal(self, draft: Draft, seq: int, prev: str) -> Envelope:
        return build_envelope(
            device=self.device,
            boot=self.boot,
            seq=seq,
            ts=draft.ts,
            mono=draft.mono,
            clock_ok=draft.clock_ok,
            type=draft.type,
            sev=draft.sev,
            data=draft.data,
            prev=prev,
            key=self._key,
        )
