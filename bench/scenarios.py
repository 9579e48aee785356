"""Scenario files (as examples/scenarios/) that load the simulated cabinet for the footprint runs.

`soak` is an ordinary busy cabinet at about 20 events/s: a two-person withdrawal or
return every 10 s (pending, granted, unlocked, opened, locked, closed, reconciled) and a
leak detector that flips every 50 ms (alarm.raised / alarm.cleared). It goes through
sessions, the mass ledger, alarms and outputs, so state that leaks shows up as RSS growth.

`burst` flips the leak detector as fast as the scenario clock allows: sustained load,
where group commit should put many events behind each fsync.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KEEPER_CARD, USER_CARD = "04A1B2C3D4E5F6", "04FFEEDDCCBBAA"  # examples/policy.toml
SLOT, FULL_MG = 3, 182_000 + 500_000  # c-NaCN-01: tare + content on the books
CYCLE_S = 10
LEAK_EVERY_S = 0.05


def _line(t: float, **fields: Any) -> str:
    return json.dumps({"t": round(t, 3), **fields})


def soak(seconds: int) -> str:
    lines: list[str] = []
    for cycle in range(max(1, seconds // CYCLE_S)):
        t0 = cycle * CYCLE_S
        mg = FULL_MG - 10_000 if cycle % 2 == 0 else FULL_MG  # take 10 g out, then put back
        access: list[tuple[float, dict[str, object]]] = [
            (t0 + 0.0, {"input": "badge", "reader": "A", "uid": KEEPER_CARD}),
            (t0 + 0.3, {"input": "badge", "reader": "B", "uid": USER_CARD}),
            (t0 + 0.6, {"input": "door", "state": "open"}),
            (t0 + 1.0, {"input": "weight", "slot": SLOT, "mg": mg}),
            (t0 + 1.5, {"input": "door", "state": "closed"}),
        ]
        leaks: list[tuple[float, dict[str, object]]] = [
            (t0 + 0.025 + k * LEAK_EVERY_S, {"input": "leak", "wet": k % 2 == 0})
            for k in range(int(CYCLE_S / LEAK_EVERY_S))
        ]
        for t, fields in sorted(access + leaks, key=lambda item: item[0]):
            lines.append(_line(t, **fields))
    return "\n".join(lines) + "\n"


def burst(inputs: int, per_ms: int = 1) -> str:
    """`inputs` leak flips, `per_ms` of them at each scenario millisecond."""
    return (
        "\n".join(_line((k // per_ms) / 1000, input="leak", wet=k % 2 == 0) for k in range(inputs))
        + "\n"
    )


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path
