"""`cabinet-central serve` with real `cabinet-agent run` on the simulated cabinet.

An alarm raised in boot 1 (while the centre was not even running: its events reach the
centre through the agent's own `resend`), acknowledged through the command gateway in
boot 2 with a Chinese comment, cleared in boot 3: the centre's record is the cabinet's
own outbox, byte for byte, and its projection says what that record says.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.wire import parse_envelope
from central.ingest.commands import CommandGateway, UnknownDevice
from central.mqtt import BrokerConnection, BrokerOptions
from central.registry import load_registry
from central.store import Store
from tests.central.cabinet import FakeCabinet
from tests.central_service.rig import CentralRig, wait_until
from tests.daemon.agent_process import POLICY, ROOT, keygen, sim_config
from tests.support.broker import Broker

pytestmark = pytest.mark.realpart
DEVICE, SITE = "cab-chem-0042", "lab"


class Cabinet:
    """One simulated cabinet's agent across restarts (same state dir, boot + 1 each run)."""

    def __init__(self, tmp: Path, broker: Broker, central_pub: str) -> None:
        self.tmp = tmp
        self.pubkey = keygen(tmp)
        self.config = sim_config(tmp, broker.url, heartbeat_s=2, central_pubkey=central_pub)
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def run(self, scenario: list[dict[str, object]] | None, exit_after: float | None) -> None:
        self.runs += 1
        args = [
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--config",
            str(self.config),
            "--policy",
            str(POLICY),
        ]
        if scenario is not None:
            path = self.tmp / f"scenario{self.runs}.jsonl"
            path.write_text("".join(json.dumps(line) + "\n" for line in scenario))
            args += ["--scenario", str(path), "--speed", "20"]
        if exit_after is not None:
            args += ["--exit-after-scenario", str(exit_after)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CABINET_")}
        log = (self.tmp / f"agent{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def own_record(self) -> list[bytes]:
        with sqlite3.connect(self.tmp / "state" / "outbox.db") as db:
            return [bytes(p) for (p,) in db.execute("SELECT payload FROM events ORDER BY seq")]


@pytest.fixture
def rig(
    tmp_path: Path, make_broker: Callable[..., Broker]
) -> Iterator[tuple[CentralRig, Cabinet, Store, Broker]]:
    broker = make_broker(tls=False)
    stand_in = FakeCabinet(device=DEVICE, site=SITE)
    central = CentralRig(tmp_path, broker.url, f"sqlite:///{tmp_path / 'central.db'}", [stand_in])
    (tmp_path / "cabinet").mkdir()
    cabinet = Cabinet(tmp_path / "cabinet", broker, central.central_pub.to_text())
    central.registry.write_text(
        f'[device."{DEVICE}"]\npubkey = "{cabinet.pubkey.to_text()}"\nsite = "{SITE}"\n'
    )
    store = Store.open(f"sqlite:///{tmp_path / 'central.db'}")
    yield central, cabinet, store, broker
    cabinet.stop()
    central.stop_all()
    store.close()


def _caught_up(store: Store, cabinet: Cabinet) -> bool:
    try:
        (row,) = store.cabinets()
    except (ValueError, Exception):
        return False
    return row.missing == () and row.last_seq == len(cabinet.own_record())


@pytest.mark.parametrize("acknowledged", [False, True], ids=["unacknowledged", "acknowledged"])
def test_an_alarm_across_three_boots_matches_the_cabinets_own_record(  # type: ignore[no-untyped-def]
    rig, acknowledged: bool
) -> None:
    central, cabinet, store, broker = rig
    leak = [
        {"start": "2026-11-22T09:00:00Z"},
        {"t": 0, "input": "leak", "wet": True},
        {"t": 2, "input": "tick"},
    ]
    cabinet.run(leak, exit_after=1)  # boot 1: nobody at the centre listens yet
    assert cabinet.proc is not None and cabinet.proc.wait(60) == 0
    central.serve_ready()
    cabinet.run(None, exit_after=None)  # boot 2: birth, heartbeats, and resend on request
    wait_until(lambda: _caught_up(store, cabinet), 60, "boot 1 fetched through resend")
    (alarm,) = [a for a in store.alarms("open") if a.kind == "leak"]

    registry = load_registry(central.registry)
    with BrokerConnection(BrokerOptions(url=broker.url)) as connection:
        gateway = CommandGateway(
            store, lambda: registry.devices, central.central_key, connection.publish
        )
        snapshot = gateway.send(DEVICE, "snapshot", {}, by="p-1003", timeout_s=20)
        assert (snapshot.result, snapshot.reason) == ("applied", None), snapshot
        with pytest.raises(UnknownDevice):
            gateway.send("cab-nowhere", "snapshot", {}, by="p-1003")
        if acknowledged:
            answer = gateway.send(
                DEVICE,
                "ack",
                {"alarm": alarm.alarm, "comment": "已通知安全员"},
                by="p-1003",
                timeout_s=20,
            )
            assert (answer.result, answer.reason) == ("applied", None), answer
    if acknowledged:
        (acked,) = [a for a in store.alarms("open") if a.alarm == alarm.alarm]
        assert (acked.acked_by, acked.ack_comment) == ("p-1003", "已通知安全员")

    cabinet.stop()
    dry = [
        {"start": "2026-11-22T10:00:00Z"},
        {"t": 0, "input": "leak", "wet": False},
        {"t": 15, "input": "tick"},
    ]
    cabinet.run(dry, exit_after=1)  # boot 3: the leak is gone
    assert cabinet.proc.wait(60) == 0
    wait_until(lambda: _caught_up(store, cabinet), 60, "boot 3 stored")
    # the centre's record is the cabinet's own, byte for byte ...
    record = cabinet.own_record()
    assert store.events(DEVICE, limit=10**4) == record
    assert store.quarantine() == []
    # ... and its projection says what that record says about the alarm
    said = [
        (e["type"], e["boot"])
        for e in map(parse_envelope, record)
        if e["type"].startswith("alarm.") and e["data"].get("alarm") == alarm.alarm
    ]
    steps = store.alarm_history(DEVICE, alarm.alarm)
    boots = {e["seq"]: e["boot"] for e in map(parse_envelope, record)}
    assert [(f"alarm.{s.what}", boots[s.seq]) for s in steps] == said
    (projected,) = [a for a in store.alarms("all") if a.alarm == alarm.alarm]
    assert (projected.cleared_ms is not None) == (("alarm.cleared", 3) in said)
    assert ("alarm.cleared", 3) in said, "the agent re-checks open alarms at start"
    expected = ["raised", "acknowledged", "cleared"] if acknowledged else ["raised", "cleared"]
    assert [s.what for s in steps] == expected
    assert [boots[s.seq] for s in steps] == ([1, 2, 3] if acknowledged else [1, 3])
