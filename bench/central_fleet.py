"""The benchmark's city: pre-signed, chained envelopes of simulated cabinets
(bench.central_ingest), a realistic mix of heartbeats, telemetry, badges, door and
withdrawals, interleaved as a city's stream arrives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.wire import GENESIS_PREV, Envelope, SigningKey, build_envelope, event_topic

SITE = "city"
T0_MS = 1_795_338_000_000
MIX = (
    (
        "system.heartbeat",
        {"uptime_s": 60, "outbox_unsent": 0, "oldest_unsent_age_s": None, "uplink": "up"},
    ),
    ("env.reading", {"voc_ppb": 120}),
    ("access.pending", {"person": "p-1001", "reader": "A", "expires_at_ms": T0_MS + 30_000}),
    (
        "access.granted",
        {"persons": ["p-1001", "p-1002"], "readers": ["A", "B"], "mode": "local", "session": "s"},
    ),
    ("door.opened", {"session": "s"}),
    (
        "inventory.withdrawal",
        {
            "session": "s",
            "persons": ["p-1001", "p-1002"],
            "slot": 3,
            "container": "c-NaCN-01",
            "cas": "143-33-9",
            "amount_mg": 500,
            "book_mg": 499_500,
            "approval": None,
            "purpose": None,
        },
    ),
    ("door.closed", {"session": "s"}),
    ("env.reading", {"voc_ppb": 130}),
)


@dataclass
class Cabinet:
    device: str
    key: SigningKey
    envelopes: list[Envelope]

    def emit(self, type_: str, data: dict[str, Any], sev: str = "info") -> Envelope:
        prev = self.envelopes[-1].hash if self.envelopes else GENESIS_PREV
        seq = len(self.envelopes) + 1
        env = build_envelope(
            device=self.device,
            boot=1,
            seq=seq,
            ts=T0_MS + seq * 1000,
            mono=seq * 1000,
            clock_ok=True,
            type=type_,
            sev=sev,
            data=data,
            prev=prev,
            key=self.key,
        )
        self.envelopes.append(env)
        return env


def make_fleet(cabinets: int, per_cabinet: int) -> list[Cabinet]:
    fleet = []
    for i in range(cabinets):
        cab = Cabinet(f"cab-{i:05d}", SigningKey.generate(), [])
        cab.emit("system.started", {"version": "bench", "boot": 1, "resumed_from_seq": 0})
        for k in range(per_cabinet - 1):
            type_, data = MIX[k % len(MIX)]
            cab.emit(type_, data)
        fleet.append(cab)
    return fleet


def interleaved(fleet: list[Cabinet]) -> list[tuple[str, bytes]]:
    """Round-robin over the cabinets, each in seq order: how a city's stream arrives."""
    out = []
    for k in range(max(len(c.envelopes) for c in fleet)):
        for cab in fleet:
            if k < len(cab.envelopes):
                env = cab.envelopes[k]
                out.append((event_topic("cabinet", SITE, cab.device, env.type), env.payload))
    return out
