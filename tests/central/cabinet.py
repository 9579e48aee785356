"""A stand-in cabinet for cabinetctl's tests: signs and chains envelopes with agent.wire.

It is the contract's own builder (wire.build_envelope), not a copy of it, so a test
that passes here passes against any agent that follows agent.wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.wire import GENESIS_PREV, Envelope, SigningKey, build_envelope, event_topic

DAY0_MS = 1_795_338_000_000  # 2026-11-22T09:00:00Z, the examples' scenario start

SEVERITY = {
    "alarm.raised": "alarm",
    "access.denied": "warning",
    "policy.rejected": "warning",
    "command.rejected": "warning",
    "system.outbox_dropped": "warning",
}


@dataclass
class FakeCabinet:
    device: str = "cab-1"
    site: str = "lab"
    key: SigningKey = field(default_factory=SigningKey.generate)
    boot: int = 1
    now_ms: int = DAY0_MS
    envelopes: list[Envelope] = field(default_factory=list)

    @property
    def pubkey(self) -> str:
        return self.key.public.to_text()

    def emit(
        self, type: str, data: dict[str, Any] | None = None, *, at_ms: int | None = None
    ) -> Envelope:
        if at_ms is not None:
            self.now_ms = at_ms
        else:
            self.now_ms += 1000
        prev = self.envelopes[-1].hash if self.envelopes else GENESIS_PREV
        env = build_envelope(
            device=self.device,
            boot=self.boot,
            seq=len(self.envelopes) + 1,
            ts=self.now_ms,
            mono=self.now_ms - DAY0_MS,
            clock_ok=True,
            type=type,
            sev=SEVERITY.get(type, "info"),
            data=data or {},
            prev=prev,
            key=self.key,
        )
        self.envelopes.append(env)
        return env

    def topic(self, env: Envelope, prefix: str = "cabinet") -> str:
        return event_topic(prefix, self.site, self.device, env.type)

    def jsonl(self, envelopes: list[Envelope] | None = None) -> bytes:
        return b"".join(e.payload + b"\n" for e in (envelopes or self.envelopes))

    def status(self, state: str = "online") -> bytes:
        body: dict[str, Any] = {"state": state, "device": self.device, "boot": self.boot}
        if state == "online":
            body |= {"last_seq": len(self.envelopes), "pubkey": self.pubkey, "version": "0.1.0"}
        return json.dumps(body).encode()


def write_registry(path: Path, *cabinets: FakeCabinet) -> Path:
    lines = []
    for c in cabinets:
        lines += [f'[device."{c.device}"]', f'pubkey = "{c.pubkey}"', f'site = "{c.site}"', ""]
    path.write_text("\n".join(lines))
    return path


def forge(env: Envelope, **changes: Any) -> bytes:
    """The same envelope with fields changed and the old signature kept."""
    fields = dict(env.fields)
    fields.update(changes)
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
