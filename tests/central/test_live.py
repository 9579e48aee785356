"""cabinetctl against a real mosquitto and a fake device: what a real agent cannot show.

Policy push, the remote commands, resend and `watch` against real events are tested with
real `cabinet-agent run` processes in test_with_agent.py. Here the cabinet is
tests.central.fake_device, for the cases only it produces on demand: a forged answer
ahead of the real one, a device that never answers, a live stream with a hole in it and
tampered copies that arrive before the genuine envelope.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.wire import SigningKey, sign_policy
from central.cli import cli
from tests.central.cabinet import FakeCabinet, forge, write_registry
from tests.central.fake_device import FakeDevice
from tests.support.broker import Broker

pytestmark = pytest.mark.realpart

CABINETCTL = str(Path(sys.executable).parent / "cabinetctl")


class Setup:
    def __init__(self, tmp: Path, broker: Broker) -> None:
        self.tmp, self.broker = tmp, broker
        self.central = SigningKey.generate()
        self.key_file = tmp / "central.key"
        self.key_file.write_text(self.central.to_text())
        self.key_file.chmod(0o600)
        self.cabinet = FakeCabinet("cab-1", "lab")
        self.registry = write_registry(tmp / "devices.toml", self.cabinet)
        self.env = {
            "CABINETCTL_REGISTRY": str(self.registry),
            "CABINETCTL_KEY": str(self.key_file),
            "CABINETCTL_BROKER": broker.url,
        }


@pytest.fixture
def setup(tmp_path: Path, make_broker: Callable[..., Broker]) -> Iterator[Setup]:
    yield Setup(tmp_path, make_broker())


@pytest.fixture
def device(setup: Setup) -> Iterator[FakeDevice]:
    dev = FakeDevice(setup.broker, setup.cabinet, setup.central.public)
    yield dev
    dev.close()


class WatchProcess:
    """`cabinetctl watch --json` as an operator would run it, its lines collected."""

    def __init__(self, setup: Setup, *args: str) -> None:
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [CABINETCTL, "watch", "--json", "--resend-after", "0.3", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **setup.env},
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait(lambda ls: any(line["kind"] == "watching" for line in ls), "subscription")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(json.loads(raw))
                self._cond.notify_all()

    def wait(self, done: Callable[[list[dict[str, Any]]], bool], what: str, t: float = 15) -> None:
        deadline = time.monotonic() + t
        with self._cond:
            while not done(self.lines):
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise AssertionError(f"watch exited {self.proc.returncode}: {err}")
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}; got {self.lines}"
                self._cond.wait(min(left, 0.1))

    def open_alarms(self) -> list[dict[str, Any]]:
        """What the store held open when watch started (`--store`)."""
        self.wait(lambda ls: any(x["kind"] == "open_alarms" for x in ls), "the open alarms")
        with self._cond:
            line = next(x for x in self.lines if x["kind"] == "open_alarms")
        alarms: list[dict[str, Any]] = line["alarms"]
        return alarms

    def events(self) -> list[dict[str, Any]]:
        with self._cond:
            return [line for line in self.lines if line["kind"] == "event"]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # how a person ends it: Ctrl-C
        return self.proc.wait(10)


def test_watch_verifies_flags_forgeries_and_fills_a_gap_by_resend(
    setup: Setup, device: FakeDevice
) -> None:
    cab = setup.cabinet
    for i in range(6):
        cab.emit("door.opened" if i % 2 else "door.closed", {"session": f"S{i}"})
    impostor = FakeCabinet("cab-1", "lab")
    impostor.emit("door.opened", {"session": "S0"})
    impostor.emit("alarm.raised", {"alarm": "X", "kind": "door_forced"})
    store = setup.tmp / "ledger.db"
    watch = WatchProcess(setup, "--store", str(store))
    try:
        device.publish_raw("cabinet/lab/cab-1/status", cab.status("online"), retain=True)
        device.publish(0)
        device.publish(1)
        forged = impostor.envelopes[1]  # signed with another key, same device id
        device.publish_raw(cab.topic(forged), forged.payload)
        modified = forge(cab.envelopes[2], data={"session": "S-evil"})
        device.publish_raw(cab.topic(cab.envelopes[2]), modified)
        device.publish(2)
        device.publish(5)  # 4 and 5 (indexes 3, 4) never published: a gap
        watch.wait(
            lambda ls: sum(1 for x in ls if x.get("kind") == "event" and x["verified"]) >= 7,
            "the gap filled and the resend answered",
        )
    finally:
        assert watch.stop() == 0

    events = watch.events()
    verified = [(e["seq"], e["type"]) for e in events if e["verified"]]
    assert verified == [
        (1, "door.closed"),
        (2, "door.opened"),
        (3, "door.closed"),
        (4, "door.opened"),
        (5, "door.closed"),
        (6, "door.opened"),
        (7, "command.applied"),
    ]
    assert all(e["problem"] is None for e in events if e["verified"])
    flagged = [e for e in events if not e["verified"]]
    assert [(e["device"], e["seq"], e["type"]) for e in flagged] == [
        ("cab-1", 2, "alarm.raised"),
        ("cab-1", 3, "door.closed"),
    ]
    assert all("bad signature" in e["problem"] for e in flagged)
    assert flagged[1]["envelope"]["data"] == {"session": "S-evil"}
    resends = [x for x in watch.lines if x["kind"] == "resend"]
    assert [(r["device"], r["from_seq"], r["to_seq"]) for r in resends] == [("cab-1", 4, 5)]
    assert [c["args"] for c in device.commands] == [{"from_seq": 4, "to_seq": 5}]
    statuses = [x for x in watch.lines if x["kind"] == "status"]
    assert statuses[0]["state"] == "online" and statuses[0]["problem"] is None
    assert not any(e["type"] == "alarm.raised" and e["verified"] for e in events)

    result = CliRunner(env=setup.env).invoke(cli, ["verify", str(store)])
    assert result.output == "7 events, devices 1, OK\n"


def test_a_signed_policy_from_another_central_key_is_not_pushed(setup: Setup) -> None:
    other = SigningKey.generate()
    signed = setup.tmp / "other.json"
    signed.write_text(json.dumps(sign_policy({"version": 1}, other)))
    result = CliRunner(env=setup.env).invoke(
        cli, ["policy", "push", str(signed), "--device", "cab-1"]
    )
    assert result.exit_code == 1 and "not signed by this central key" in result.output


def test_commands_wait_for_the_verified_answer_and_ignore_a_forged_one(
    setup: Setup, device: FakeDevice
) -> None:
    runner = CliRunner(env=setup.env)
    device.forge_first = FakeCabinet("cab-1", "lab")
    acked = runner.invoke(cli, ["ack", "A1-7", "--by", "p-1003", "--device", "cab-1"])
    assert acked.exit_code == 0, acked.output
    assert "WARNING: an answer to nonce" in acked.stderr and "does not verify" in acked.stderr
    assert acked.stdout.startswith("cab-1: ack applied [command.applied seq 1]")
    approved = runner.invoke(
        cli,
        [
            "approve-withdrawal",
            "--device",
            "cab-1",
            "--container",
            "c-NaCN-01",
            "--max-grams",
            "12.5",
            "--person",
            "p-1001",
            "--person",
            "p-1002",
            "--valid-for",
            "1h",
            "--by",
            "p-1003",
            "--purpose",
            "assay",
        ],
    )
    assert approved.exit_code == 0, approved.output
    args = device.commands[-1]["args"]
    assert (args["container"], args["max_mg"], args["persons"]) == (
        "c-NaCN-01",
        12_500,
        ["p-1001", "p-1002"],
    )
    assert abs(args["until_ms"] - (time.time() * 1000 + 3_600_000)) < 60_000
    approve = ["approve", "--person", "p-1003", "--by", "p-1001"]
    for command in (approve, ["snapshot"], ["resend", "1", "2"]):
        done = runner.invoke(cli, [*command, "--device", "cab-1", "--ttl", "60s"])
        assert done.exit_code == 0, done.output
    names = [c["name"] for c in device.commands]
    assert names == ["ack", "approve_withdrawal", "approve", "snapshot", "resend"]
    assert device.commands[2]["args"]["person"] == "p-1003" and device.commands[2]["args"]["by"]
    ttl = device.commands[3]["expires_at_ms"] - device.commands[3]["issued_at_ms"]
    assert ttl == 60_000


def test_no_answer_is_a_clear_timeout(setup: Setup) -> None:
    silent = FakeDevice(setup.broker, setup.cabinet, setup.central.public, answer=False)
    try:
        result = CliRunner(env=setup.env).invoke(
            cli, ["snapshot", "--device", "cab-1", "--timeout", "1"]
        )
    finally:
        silent.close()
    assert result.exit_code == 1
    assert "no verified answer from cab-1 within 1 s" in result.output
    assert len(silent.commands) == 1  # it was delivered and verified, just not answered


def test_an_unreachable_broker_is_one_line(setup: Setup) -> None:
    env = {**setup.env, "CABINETCTL_BROKER": "mqtt://127.0.0.1:1"}
    result = CliRunner(env=env).invoke(cli, ["snapshot", "--device", "cab-1"])
    assert result.exit_code == 1
    assert result.output.startswith("cabinetctl: cannot reach broker mqtt://127.0.0.1:1")
    unknown = CliRunner(env=setup.env).invoke(cli, ["snapshot", "--device", "cab-404"])
    assert unknown.exit_code == 1 and "not in the registry" in unknown.output


def test_the_live_screen_runs_and_stops_by_itself(setup: Setup, device: FakeDevice) -> None:
    device.publish_raw("cabinet/lab/cab-1/status", setup.cabinet.status(), retain=True)
    done = subprocess.run(
        [CABINETCTL, "watch", "--duration", "2"],
        capture_output=True,
        env={**os.environ, **setup.env, "COLUMNS": "120", "LINES": "30"},
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    screen = done.stdout.decode()
    assert "cabinetctl watch" in screen and "cab-1 online" in screen
    assert "Open alarms: 0" in screen


def test_commands_go_over_tls_with_a_client_certificate(setup: Setup, device: FakeDevice) -> None:
    cert = setup.broker.client_cert("central-ops")
    env = {**setup.env, "CABINETCTL_BROKER": setup.broker.tls_url}
    tls = ["--ca", str(setup.broker.ca), "--cert", str(cert.cert), "--cert-key", str(cert.key)]
    result = CliRunner(env=env).invoke(cli, ["snapshot", "--device", "cab-1", *tls])
    assert result.exit_code == 0, result.output
    no_cert = CliRunner(env=env).invoke(
        cli, ["snapshot", "--device", "cab-1", "--ca", str(setup.broker.ca)]
    )
    assert no_cert.exit_code == 1 and no_cert.output.startswith("cabinetctl: ")
    assert "Traceback" not in no_cert.output


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_restarted_watch_store_still_lists_the_alarms_opened_before_it(
    setup: Setup, device: FakeDevice, backend: str, request: pytest.FixtureRequest
) -> None:
    cab = setup.cabinet
    cab.emit("system.started", {"boot": 1, "resumed_from_seq": 0, "version": "t"})
    cab.emit("alarm.raised", {"alarm": "A1-1", "kind": "door_forced"})
    cab.emit("alarm.raised", {"alarm": "A1-2", "kind": "leak"})
    cab.emit("alarm.cleared", {"alarm": "A1-2", "kind": "leak", "reason": "condition_gone"})
    cab.boot = 2  # the cabinet restarts; its alarm of boot 1 is still open
    cab.emit("system.started", {"boot": 2, "resumed_from_seq": 4, "version": "t"})
    cab.emit("alarm.raised", {"alarm": "A2-1", "kind": "tamper"})
    store = str(setup.tmp / "central.db")
    if backend == "postgresql":
        store = request.getfixturevalue("postgres").new_database()
    first = WatchProcess(setup, "--store", store)
    try:
        assert first.open_alarms() == []
        for index in range(len(cab.envelopes)):
            device.publish(index)
        first.wait(lambda ls: sum(1 for x in ls if x.get("verified")) >= 6, "all six events")
    finally:
        assert first.stop() == 0

    again = WatchProcess(setup, "--store", store)
    try:
        opened = again.open_alarms()
    finally:
        assert again.stop() == 0
    assert sorted((a["device"], a["alarm"], a["kind"]) for a in opened) == [
        ("cab-1", "A1-1", "door_forced"),
        ("cab-1", "A2-1", "tamper"),
    ]
    assert all(a["since"].endswith("+08:00") for a in opened)
    screen = subprocess.run(
        [CABINETCTL, "watch", "--store", store, "--duration", "1"],
        capture_output=True,
        env={**os.environ, **setup.env, "COLUMNS": "140", "LINES": "30"},
        timeout=30,
        check=False,
    )
    assert screen.returncode == 0, screen.stderr
    assert "Open alarms: 2" in screen.stdout.decode()


def test_an_old_ledger_given_to_watch_store_is_refused_with_the_way_to_carry_it_over(
    setup: Setup,
) -> None:
    old = setup.tmp / "ledger.db"
    with sqlite3.connect(old) as db:
        db.executescript("CREATE TABLE events (x); CREATE TABLE problems (y);")
    result = CliRunner(env=setup.env).invoke(cli, ["watch", "--store", str(old), "--json"])
    assert result.exit_code == 1
    assert "ledger of an older cabinetctl" in result.output and "cabinetctl import" in result.output
