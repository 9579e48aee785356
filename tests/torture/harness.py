"""What the torture tests share: a steady-load scenario, the agent as a child process, and
the ledger check that nothing committed was lost, reused or broken.

The evidence after any number of crashes is the outbox (SQLite, the device's own
record) plus what a subscriber received. Together they must hold every seq from 1 to the
last one exactly once per seq value (a redelivery is allowed, a different envelope under
the same seq is not), and the union must verify as one signed chain.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent.wire import VerifyKey, verify_chain
from tests.support.fixtures import Received

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "examples" / "policy.toml"
DEVICE = "cab-chem-0042"
KEEPER, USER, STRANGER = "04A1B2C3D4E5F6", "04FFEEDDCCBBAA", "04000000C0FFEE"
SLOT, FULL_MG = 3, 182_000 + 500_000  # c-NaCN-01 in examples/policy.toml: tare + content


def steady_load(seconds: int) -> str:
    """A busy cabinet, ~11 events per scenario second, for `seconds` (a scenario file).

    Every 10 s a two-person withdrawal or return (pending, granted, unlocked, opened,
    locked, closed, reconciled), a tamper switch opened and shut, every 100 s a stranger's
    card (few enough never to trip the brute-force lockout), VOC high for 12 s of every
    30 (raise after the hold, clear after it), and the leak detector flipping every 0.1 s.
    """
    steps: list[tuple[float, dict[str, object]]] = []
    for cycle in range(max(1, seconds // 10)):
        t = cycle * 10.0
        mg = FULL_MG - 10_000 if cycle % 2 == 0 else FULL_MG
        steps += [
            (t + 0.0, {"input": "badge", "reader": "A", "uid": KEEPER}),
            (t + 0.4, {"input": "badge", "reader": "B", "uid": USER}),
            (t + 0.8, {"input": "door", "state": "open"}),
            (t + 1.2, {"input": "weight", "slot": SLOT, "mg": mg}),
            (t + 2.0, {"input": "door", "state": "closed"}),
            (t + 5.0, {"input": "tamper", "open": True}),
            (t + 5.5, {"input": "tamper", "open": False}),
        ]
        if cycle % 10 == 9:
            steps.append((t + 7.0, {"input": "badge", "reader": "A", "uid": STRANGER}))
        if cycle % 3 == 0:
            steps.append((t + 0.2, {"input": "voc", "ppb": 12_000}))
        elif cycle % 3 == 1:
            steps.append((t + 2.2, {"input": "voc", "ppb": 2_000}))
        steps += [(t + 0.05 + k / 10, {"input": "leak", "wet": k % 2 == 0}) for k in range(100)]
    steps.sort(key=lambda step: step[0])
    return "".join(json.dumps({"t": round(t, 3), **line}) + "\n" for t, line in steps)


def short_scene() -> str:
    """A few seconds of ordinary use: the last, clean run that drains everything."""
    return steady_load(10)


def write_config(
    directory: Path, broker_url: str, *, central_pubkey: str | None = None, **broker: int
) -> Path:
    state = directory / "state"
    state.mkdir(parents=True, exist_ok=True)
    lines = [
        f'device = "{DEVICE}"',
        'site = "lab"',
        f'state_dir = "{state}"',
        'log_format = "json"',
        "[broker]",
        f'url = "{broker_url}"',
        *(f"{name} = {value}" for name, value in broker.items()),
        "[keys]",
        *([f'central_pubkey = "{central_pubkey}"'] if central_pubkey else []),
        "[hardware.sim]",
        "enabled = true",
    ]
    path = directory / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Agent:
    """`cabinet-agent run` on the simulated cabinet, its output in a log file."""

    def __init__(
        self, config: Path, scenario: Path, *, speed: float, exit_after: float | None = None
    ) -> None:
        argv = [sys.executable, "-m", "agent.cli", "run", "--config", str(config)]
        argv += ["--policy", str(POLICY), "--scenario", str(scenario), "--speed", str(speed)]
        if exit_after is not None:
            argv += ["--exit-after-scenario", str(exit_after)]
        self.log = config.parent / f"agent-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float) -> bool:
        """Until the daemon says it is ready (or it died: False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "daemon.ready" in self.log.read_text(errors="replace"):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        raise AssertionError(f"agent not ready in {timeout} s:\n{self.tail()}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


# --- the ledger ----------------------------------------------------------------------


@dataclass
class Ledger:
    """The outbox rows (seq -> payload, sent) and the deliveries seen (seq -> payloads)."""

    stored: dict[int, tuple[bytes, bool]]
    delivered: dict[int, set[bytes]] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return max(self.stored, default=0)

    def check(self, when: str) -> None:
        """Every seq 1..N present once, deliveries identical to the record, boots ordered."""
        seqs = sorted(self.stored)
        assert seqs == list(range(1, len(seqs) + 1)), (
            f"{when}: outbox seqs not 1..N: {_describe(seqs)}"
        )
        for seq, payloads in self.delivered.items():
            assert seq in self.stored, f"{when}: seq {seq} was delivered but is not in the outbox"
            assert payloads == {self.stored[seq][0]}, f"{when}: seq {seq} was reused"
        boots = [json.loads(self.stored[s][0])["boot"] for s in seqs]
        assert boots == sorted(boots), f"{when}: boot went backwards along seq"

    def verify(self, key: VerifyKey) -> None:
        envelopes = [json.loads(p) for p, _ in self.stored.values()]
        envelopes += [json.loads(p) for ps in self.delivered.values() for p in ps]
        report = verify_chain(envelopes, key)
        assert report.ok, report.failures[:5]
        assert report.spans.get(DEVICE, (0, 0))[1] == self.last_seq


def read_outbox(state_dir: Path) -> dict[int, tuple[bytes, bool]]:
    db = sqlite3.connect(f"file:{state_dir / 'outbox.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT seq, payload, sent FROM events ORDER BY seq").fetchall()
    finally:
        db.close()
    return {int(seq): (bytes(payload), bool(sent)) for seq, payload, sent in rows}


class Deliveries:
    """Parses a Recorder's event messages incrementally (thousands arrive per run)."""

    def __init__(self, snapshot: Callable[[], list[Received]]) -> None:
        self._snapshot = snapshot
        self._seen = 0
        self.by_seq: dict[int, set[bytes]] = {}
        self.births: list[tuple[float, dict[str, object]]] = []

    def update(self) -> dict[int, set[bytes]]:
        messages = self._snapshot()
        for message in messages[self._seen :]:
            if "/evt/" in message.topic:
                seq = int(json.loads(message.payload)["seq"])
                self.by_seq.setdefault(seq, set()).add(message.payload)
            elif message.topic.endswith("/status"):
                status = json.loads(message.payload)
                if status.get("state") == "online":
                    self.births.append((message.at, status))
        self._seen = len(messages)
        return self.by_seq

    def missing(self, last_seq: int) -> set[int]:
        return set(range(1, last_seq + 1)) - set(self.update())

    def wait_all(self, last_seq: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            missing = self.missing(last_seq)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} seqs never delivered: {_describe(missing)}")
            time.sleep(0.05)


def seq_runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted seqs as inclusive ranges of consecutive values."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _describe(seqs: Iterable[int]) -> str:
    runs = seq_runs(seqs)
    text = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in runs[:10])
    return text + (f" and {len(runs) - 10} more ranges" if len(runs) > 10 else "")
