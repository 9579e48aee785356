"""cabinetctl against real `cabinet-agent run` processes on a real mosquitto, end to end.

Every cabinet here is the real daemon (core, rules, outbox, uplink, command verifier) on
the simulated cabinet, its agent.toml pinning the central public key that
`cabinetctl keygen` made. The central side is cabinetctl itself: `policy sign/push`, the
remote commands, and `watch --json` as a child process. The only hand-made messages are
the ones neither side ever sends on its own: an expired command, a replayed one, a forged
and a modified envelope.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agent.status import read_status
from agent.wire import (
    SigningKey,
    VerifyKey,
    WireError,
    build_command,
    build_envelope,
    canonical,
    command_topic,
    envelope_hash,
    event_topic,
    status_topic,
    verify_envelope,
)
from central.cli import cli
from tests.daemon.agent_process import POLICY, ROOT, SCENARIOS, keygen, sim_config, verified
from tests.support.broker import Broker
from tests.support.fixtures import Recorder

pytestmark = pytest.mark.realpart

BIN = Path(sys.executable).parent
CABINETCTL = str(BIN / "cabinetctl")
DATA = Path(__file__).parent / "data"
DEVICE = "cab-chem-0042"  # what sim_config writes, and the examples' policy is for
SITE = "lab"

Line = dict[str, Any]
# Raised or not depending on the test machine's NTP state (adjtimex), not on the scene.
HOST_ALARMS = frozenset({"clock_unsynced"})


# --- the parts: a cabinet agent, a watching operator, and the rig that holds them ----------


class Agent:
    """`cabinet-agent run` on the simulated cabinet, with the policy file the test chooses.

    (tests.daemon.agent_process.AgentProcess always loads examples/policy.toml and always
    plays a scenario; these tests need other policies and an agent that just runs.)
    """

    def __init__(
        self,
        config: Path,
        *,
        policy: Path,
        scenario: Path | None,
        speed: float,
        exit_after: float | None,
    ) -> None:
        args = [sys.executable, "-m", "agent.cli", "run", "--config", str(config)]
        args += ["--policy", str(policy)]
        if scenario is not None:
            args += ["--scenario", str(scenario), "--speed", str(speed)]
        if exit_after is not None:
            args += ["--exit-after-scenario", str(exit_after)]
        self.log = config.parent / f"agent-{time.monotonic_ns()}.log"
        env = dict(os.environ)
        env.pop("CABINET_BROKER_URL", None)
        env.pop("CABINET_STATE_DIR", None)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env
            )

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, as systemd stops it; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class Watch:
    """`cabinetctl watch --json` as an operator runs it, every output line collected."""

    def __init__(self, env: dict[str, str], stderr: Path, *args: str) -> None:
        self.lines: list[Line] = []
        self.stderr = stderr
        self._cond = threading.Condition()
        with stderr.open("w") as err:
            self.proc = subprocess.Popen(
                [CABINETCTL, "watch", "--json", "--resend-after", "0.3", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, **env},
            )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda ls: any(x["kind"] == "watching" for x in ls), "the subscription")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(json.loads(raw))
                self._cond.notify_all()

    def wait_for(self, done: Callable[[list[Line]], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done(self.lines):
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"watch exited {self.proc.returncode}: {self.stderr.read_text()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; watch said {self.lines}")
                self._cond.wait(min(left, 0.1))

    def snapshot(self) -> list[Line]:
        with self._cond:
            return list(self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C: how a person ends it
        return self.proc.wait(10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def shown(lines: list[Line], device: str, *, verified: bool = True) -> list[Line]:
    """The event lines of one device that watch showed as verified (or as flagged)."""
    return [
        x
        for x in lines
        if x["kind"] == "event" and x["device"] == device and x["verified"] is verified
    ]


def seqs(lines: list[Line]) -> list[int]:
    return sorted(x["seq"] for x in lines)


class Rig:
    """One broker, the centre (key from `cabinetctl keygen`, registry), cabinets, watches."""

    def __init__(self, tmp: Path, broker: Broker) -> None:
        self.tmp, self.broker = tmp, broker
        self.key_file = tmp / "central.key"
        self.env = {
            "CABINETCTL_REGISTRY": str(tmp / "devices.toml"),
            "CABINETCTL_KEY": str(self.key_file),
            "CABINETCTL_BROKER": broker.url,
        }
        made = self.ctl("keygen", "--out", str(self.key_file))
        assert made.exit_code == 0, made.output
        self.central_pubkey = made.stdout.strip()  # the `pubkey <b64>` line
        self.device_keys: dict[str, VerifyKey] = {}
        self.agents: list[Agent] = []
        self.watches: list[Watch] = []
        self.wire = Recorder(broker, "cabinet/#").start()  # everything on the broker

    def close(self) -> None:
        for watch in self.watches:
            watch.kill()
        for agent in self.agents:
            agent.kill()
        self.wire.stop()

    # --- the centre ------------------------------------------------------------------

    def ctl(self, *args: str) -> Result:
        return CliRunner(env=self.env).invoke(cli, list(args))

    def central_key(self) -> SigningKey:
        return SigningKey.from_text(self.key_file.read_text())

    def watch(self, *args: str) -> Watch:
        watch = Watch(self.env, self.tmp / f"watch-{len(self.watches)}.err", *args)
        self.watches.append(watch)
        return watch

    # --- cabinets ----------------------------------------------------------------------

    def cabinet(self, device: str = DEVICE, site: str = SITE) -> Path:
        """A provisioned cabinet: device key, agent.toml pinning the central key, registered."""
        home = self.tmp / device
        home.mkdir()
        key = keygen(home)
        config = sim_config(home, self.broker.url, central_pubkey=self.central_pubkey)
        text = config.read_text()
        text = text.replace(f'device = "{DEVICE}"', f'device = "{device}"', 1)
        config.write_text(text.replace(f'site = "{SITE}"', f'site = "{site}"', 1))
        added = self.ctl(
            "device", "add", device, "--pubkey", f"pubkey {key.to_text()}", "--site", site
        )
        assert added.exit_code == 0, added.output
        self.device_keys[device] = key
        return config

    def start_agent(
        self,
        config: Path,
        *,
        policy: Path = POLICY,
        scenario: Path | None = None,
        speed: float = 20,
        exit_after: float | None = None,
    ) -> Agent:
        agent = Agent(config, policy=policy, scenario=scenario, speed=speed, exit_after=exit_after)
        self.agents.append(agent)
        return agent

    def wait_online(self, device: str = DEVICE, site: str = SITE, *, boot: int) -> None:
        """Until the cabinet's birth for this boot is on the broker (it then takes commands)."""
        topic = status_topic("cabinet", site, device)

        def born() -> bool:
            for m in self.wire.on(topic):
                body = json.loads(m.payload)
                if body["state"] == "online" and body["boot"] == boot:
                    return True
            return False

        self.wire.wait_for(born, 20, f"{device} online (boot {boot})")

    # --- what the cabinets published ----------------------------------------------------

    def events(self, device: str = DEVICE) -> list[dict[str, Any]]:
        """The device's genuine envelopes seen on the broker (signature checked), by seq."""
        key = self.device_keys[device]
        by_seq: dict[int, dict[str, Any]] = {}
        for m in self.wire.snapshot():
            if "/evt/" not in m.topic:
                continue
            env = json.loads(m.payload)
            if env.get("device") != device or env["seq"] in by_seq:
                continue
            try:
                verify_envelope(env, key)
            except WireError:
                continue  # what a test forged itself
            by_seq[env["seq"]] = env
        return [by_seq[s] for s in sorted(by_seq)]

    def wait_event(
        self, match: Callable[[dict[str, Any]], bool], what: str, device: str = DEVICE
    ) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [e for e in self.events(device) if match(e)]
            return bool(found)

        self.wire.wait_for(seen, 20, what)
        return found[0]

    def times_published(self, seq: int, device: str = DEVICE) -> int:
        """How often the broker delivered the device's envelope `seq` (duplicates included)."""
        count = 0
        for m in self.wire.snapshot():
            if "/evt/" in m.topic:
                env = json.loads(m.payload)
                count += env.get("device") == device and env.get("seq") == seq
        return count

    def publish(self, topic: str, payload: bytes) -> None:
        self.wire.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def send_by_hand(
        self, name: str, args: dict[str, Any], nonce: str, *, expires_in_ms: int = 300_000
    ) -> dict[str, Any]:
        """A command signed with the central key but not by cabinetctl; the device's answer."""
        now_ms = int(time.time() * 1000)
        command = build_command(
            device=DEVICE,
            name=name,
            args=args,
            nonce=nonce,
            issued_at_ms=min(now_ms, now_ms + expires_in_ms),
            expires_at_ms=now_ms + expires_in_ms,
            key=self.central_key(),
        )
        self.publish(command_topic("cabinet", SITE, DEVICE, name), canonical(command))
        return self.wait_event(
            lambda e: e["type"].startswith("command.") and e["data"].get("nonce") == nonce,
            f"the answer to {name} {nonce}",
        )

    def assert_whole_chain(self, device: str = DEVICE) -> list[dict[str, Any]]:
        events = self.events(device)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "a seq is missing"
        assert verified(events, self.device_keys[device])
        return events


@pytest.fixture
def rig(tmp_path: Path, make_broker: Callable[..., Broker]) -> Iterator[Rig]:
    made = Rig(tmp_path, make_broker(tls=False))
    try:
        yield made
    finally:
        made.close()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Poll a file-system condition (the agent's state dir has no notifications)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_status(
    state: Path, done: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20
) -> dict[str, Any]:
    """The agent's status.json (rewritten every second) once `done` holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        status = read_status(state)
        if status is not None and done(status):
            return status
        assert time.monotonic() < deadline, f"timed out waiting for {what}; status {status}"
        time.sleep(0.05)


def policy_copy(tmp: Path, name: str, *changes: tuple[str, str]) -> Path:
    """examples/policy.toml with each (old, new) line replaced; every old line must exist."""
    text = POLICY.read_text()
    for old, new in changes:
        assert f"\n{old}\n" in text, f"{old!r} is no longer in {POLICY}"
        text = text.replace(f"\n{old}\n", f"\n{new}\n")
    path = tmp / name
    path.write_text(text)
    return path


# --- 1. policy push ------------------------------------------------------------------------


def test_policy_push_is_applied_kept_across_a_restart_and_a_re_push_is_rejected(
    rig: Rig,
) -> None:
    config = rig.cabinet()
    state = config.parent / "state"
    agent = rig.start_agent(config)  # examples/policy.toml: version 7, plain TOML
    rig.wait_online(boot=1)
    source = policy_copy(
        rig.tmp, "policy-v8.toml", ("version = 7", "version = 8"), (f'cabinet = "{DEVICE}"',) * 2
    )
    signed = rig.tmp / "policy-v8.json"
    made = rig.ctl("policy", "sign", str(source), "--out", str(signed))
    assert made.exit_code == 0, made.output

    first = rig.ctl("policy", "push", str(signed), "--device", DEVICE)
    assert first.exit_code == 0, first.output
    applied = rig.wait_event(
        lambda e: e["type"] == "policy.applied" and e["data"]["source"] == "command",
        "policy.applied",
    )
    assert applied["data"]["version"] == 8
    assert first.stdout == (
        f"{DEVICE}: policy applied (policy version 8) [policy.applied seq {applied['seq']}]\n"
    )
    # What the agent accepted is kept on disk exactly as signed, for the next start. (It
    # is written just after policy.applied is committed, so it may lag the answer a bit.)
    kept = state / "policy.json"
    wait_until(kept.exists, "policy.json")
    assert json.loads(kept.read_text()) == json.loads(signed.read_text())

    again = rig.ctl("policy", "push", str(signed), "--device", DEVICE)
    assert again.exit_code == 3, again.output
    rejected = rig.wait_event(
        lambda e: e["type"] == "policy.rejected" and e["data"]["source"] == "command",
        "policy.rejected",
    )
    # A re-push is a new command with a fresh nonce, so it is the rules that refuse it.
    assert rejected["data"]["nonce"] != applied["data"]["nonce"]
    assert (rejected["data"]["reason"], rejected["data"]["current_version"]) == (
        "version_not_newer",
        8,
    )
    assert again.stdout == (
        f"{DEVICE}: policy REJECTED (policy version 8): version_not_newer "
        f"[policy.rejected seq {rejected['seq']}]\n"
    )

    # Restart with the same --policy file (version 7): the persisted version 8 stays.
    assert agent.stop() == 0, agent.log_text()
    rig.start_agent(config)
    rig.wait_online(boot=2)
    # The policy in force is part of the state the cabinet resumes from: nothing to
    # apply again (its persisted copy is the same version), the older file is refused.
    refused_file = rig.wait_event(
        lambda e: e["boot"] == 2 and e["type"] == "policy.rejected", "boot 2 policy.rejected"
    )
    assert refused_file["data"]["source"] == "file" and refused_file["data"]["version"] == 7
    assert refused_file["data"]["reason"] == "version_not_newer"
    wait_status(
        state, lambda s: s["boot"] == 2 and "policy_version" in s, "the restarted agent's status"
    )
    status = subprocess.run(
        [str(BIN / "cabinet-agent"), "status", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["policy_version"] == 8
    boot2 = [e["type"] for e in rig.events() if e["boot"] == 2]
    assert "policy.applied" not in boot2

    after_restart = rig.ctl("policy", "push", str(signed), "--device", DEVICE)
    assert after_restart.exit_code == 3, after_restart.output
    assert "policy REJECTED (policy version 8): version_not_newer" in after_restart.stdout
    elsewhere = rig.ctl("policy", "push", str(signed), "--device", "cab-chem-0043")
    assert elsewhere.exit_code == 1
    assert f"is for cabinet '{DEVICE}', not 'cab-chem-0043'" in elsewhere.output
    rig.assert_whole_chain()


# --- 2. remote commands --------------------------------------------------------------------


def test_remote_commands_are_applied_or_refused_by_the_real_agent(rig: Rig) -> None:
    # Remote approval allowed, and a pair window long enough that the badge stays pending.
    policy = policy_copy(
        rig.tmp,
        "policy-remote.toml",
        ("pair_window_s = 30", "pair_window_s = 36000"),
        ("remote_second = true",) * 2,
    )
    config = rig.cabinet()
    state = config.parent / "state"
    rig.start_agent(config, policy=policy, scenario=DATA / "leak_and_keeper_waiting.jsonl")
    rig.wait_online(boot=1)
    leak = rig.wait_event(
        lambda e: e["type"] == "alarm.raised" and e["data"]["kind"] == "leak", "the leak alarm"
    )
    alarm = leak["data"]["alarm"]
    pending = rig.wait_event(lambda e: e["type"] == "access.pending", "the keeper's badge")
    assert pending["data"]["person"] == "p-1003"

    def the_alarm(status: dict[str, Any]) -> dict[str, Any]:
        """The leak alarm as `cabinet-agent status` shows it ({} if not shown)."""
        return next((a for a in status.get("alarms", []) if a["id"] == alarm), {})

    before = wait_status(state, lambda s: bool(the_alarm(s)), "the leak in the status")
    assert the_alarm(before)["acked"] is False and before["outputs"]["buzzer"] is True

    # An expired command (signed by the right key, for this device) changes nothing.
    refused = rig.send_by_hand("ack", {"alarm": alarm}, "stale-ack-1", expires_in_ms=-300_000)
    assert refused["type"] == "command.rejected"
    assert (refused["data"]["name"], refused["data"]["reason"]) == ("ack", "expired")
    since = int(time.time() * 1000) + 1500  # a status view taken well after the refusal
    unchanged = wait_status(state, lambda s: s["updated_ms"] >= since, "a later status")
    assert the_alarm(unchanged) == the_alarm(before)
    assert unchanged["outputs"]["buzzer"] is True

    snap = rig.ctl("snapshot", "--device", DEVICE)
    assert snap.exit_code == 0, snap.output
    done = rig.wait_event(
        lambda e: e["type"] == "command.applied" and e["data"]["name"] == "snapshot", "snapshot"
    )
    assert snap.stdout == f"{DEVICE}: snapshot applied [command.applied seq {done['seq']}]\n"
    snapshot = rig.wait_event(lambda e: e["type"] == "inventory.snapshot", "inventory.snapshot")
    slots = {s["slot"]: s for s in snapshot["data"]["slots"]}
    assert slots[3]["container"] == "c-NaCN-01"
    assert slots[3]["mass_mg"] == slots[3]["book_mg"] == 500_000
    assert slots[4]["container"] == "c-KMnO4-01"

    # The same signed snapshot command, captured on the broker and sent again: replayed.
    sent = rig.wire.on(command_topic("cabinet", SITE, DEVICE, "snapshot"))
    assert len(sent) == 1
    rig.publish(sent[0].topic, sent[0].payload)
    replay = rig.wait_event(
        lambda e: e["type"] == "command.rejected" and e["data"]["name"] == "snapshot",
        "the replayed snapshot refused",
    )
    assert replay["data"]["reason"] == "replayed_nonce"
    assert replay["data"]["nonce"] == json.loads(sent[0].payload)["nonce"]

    allowance = rig.ctl(
        "approve-withdrawal",
        "--device",
        DEVICE,
        "--container",
        "c-NaCN-01",
        "--max-grams",
        "12.5",
        "--person",
        "p-1003",
        "--person",
        "p-1002",
        "--valid-for",
        "1h",
        "--policy",
        str(policy),
    )
    assert allowance.exit_code == 0, allowance.output
    granted = rig.wait_event(
        lambda e: e["type"] == "command.applied" and e["data"]["name"] == "approve_withdrawal",
        "the approved amount",
    )
    assert (granted["data"]["container"], granted["data"]["max_mg"]) == ("c-NaCN-01", 12_500)
    assert granted["data"]["persons"] == ["p-1002", "p-1003"]

    assert rig.times_published(1) == rig.times_published(2) == 1
    again = rig.ctl("resend", "1", "2", "--device", DEVICE)
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(f"{DEVICE}: resend applied [command.applied seq ")
    rig.wire.wait_for(lambda: rig.times_published(2) >= 2, 20, "seq 2 published again")
    assert rig.times_published(1) >= 2

    unknown = rig.ctl("ack", "A1-999", "--device", DEVICE)
    assert unknown.exit_code == 3, unknown.output
    assert unknown.stdout.startswith(f"{DEVICE}: ack REJECTED: unknown_alarm [command.rejected")
    acked = rig.ctl("ack", alarm, "--device", DEVICE)
    assert acked.exit_code == 0, acked.output
    assert acked.stdout.startswith(f"{DEVICE}: ack applied [command.applied seq ")
    silenced = wait_status(state, lambda s: the_alarm(s).get("acked") is True, "the ack")
    assert silenced["outputs"]["buzzer"] is False  # buzzer off; the leak is still there

    # Remote second person, signed by hand (the test below drives cabinetctl approve).
    wrong = rig.send_by_hand("approve", {"person": "p-1001", "by": "p-1003"}, "approve-not-pending")
    assert (wrong["type"], wrong["data"]["reason"]) == ("command.rejected", "not_pending")
    approved = rig.send_by_hand("approve", {"person": "p-1003", "by": "p-1001"}, "approve-p-1003")
    assert approved["type"] == "command.applied", approved["data"]
    grant = rig.wait_event(lambda e: e["type"] == "access.granted", "the remote grant")
    assert grant["data"]["mode"] == "remote"
    assert grant["data"]["persons"] == ["p-1003", "p-1001"]
    unlocked = rig.wait_event(lambda e: e["type"] == "lock.unlocked", "the lock released")
    assert unlocked["data"]["session"] == grant["data"]["session"]

    events = rig.assert_whole_chain()
    assert [e["type"] for e in events].count("inventory.snapshot") == 1
    stale_answers = [e for e in events if e["data"].get("nonce") == "stale-ack-1"]
    assert [e["type"] for e in stale_answers] == ["command.rejected"]


def test_cabinetctl_approve_stands_in_as_the_remote_second_person(rig: Rig) -> None:
    policy = policy_copy(
        rig.tmp,
        "policy-remote.toml",
        ("pair_window_s = 30", "pair_window_s = 36000"),
        ("remote_second = true",) * 2,
    )
    config = rig.cabinet()
    rig.start_agent(config, policy=policy, scenario=DATA / "leak_and_keeper_waiting.jsonl")
    rig.wait_online(boot=1)
    rig.wait_event(lambda e: e["type"] == "access.pending", "the keeper's badge")
    # A duty login name is not a person of the policy: refused before anything is sent.
    named = ("approve", "--device", DEVICE, "--person", "p-1003", "--policy", str(policy))
    by_name = rig.ctl(*named, "--by", "op-duty")
    assert by_name.exit_code != 0 and "'op-duty' is not a person id" in by_name.output
    # Sent anyway (no --policy to check against), the cabinet refuses it with the reason.
    unchecked = rig.ctl("approve", "--device", DEVICE, "--person", "p-1003", "--by", "op-duty")
    assert unchecked.exit_code == 3 and "unknown_person" in unchecked.output
    approved = rig.ctl(*named, "--by", "p-1001")
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith(f"{DEVICE}: approve applied [command.applied seq ")
    grant = rig.wait_event(lambda e: e["type"] == "access.granted", "the remote grant")
    assert grant["data"]["mode"] == "remote"
    assert grant["data"]["persons"] == ["p-1003", "p-1001"]


# --- 3. watch: verified, forgeries flagged, a missed stretch resent -------------------------


def test_watch_verifies_the_agent_flags_forgeries_and_has_a_missed_stretch_resent(
    rig: Rig,
) -> None:
    config = rig.cabinet()
    store = rig.tmp / "ledger.db"
    first = rig.watch("--key", str(rig.key_file), "--store", str(store))
    rig.start_agent(config, scenario=SCENARIOS / "leak_and_tamper.jsonl", speed=20)

    def cleared(kind: str) -> Callable[[list[Line]], bool]:
        return lambda ls: any(
            x["type"] == "alarm.cleared" and x["envelope"]["data"]["kind"] == kind
            for x in shown(ls, DEVICE)
        )

    first.wait_for(cleared("tamper"), "the scene's alarms raised and cleared")
    live = shown(first.snapshot(), DEVICE)
    assert seqs(live) == list(range(1, len(live) + 1))
    assert all(x["problem"] is None for x in live)
    raised = [x["envelope"]["data"]["kind"] for x in live if x["type"] == "alarm.raised"]
    assert [kind for kind in raised if kind not in HOST_ALARMS] == ["leak", "tamper"]

    # Someone publishes on the cabinet's topics: an alarm signed with another key, and the
    # real leak alarm with its data changed (its signature kept).
    leak = next(
        x for x in live if x["type"] == "alarm.raised" and x["envelope"]["data"]["kind"] == "leak"
    )
    head = live[-1]["envelope"]
    impostor = build_envelope(
        device=DEVICE,
        boot=head["boot"],
        seq=head["seq"] + 1,
        ts=head["ts"] + 1000,
        mono=head["mono"] + 1000,
        clock_ok=True,
        type="alarm.raised",
        sev="alarm",
        data={"alarm": "A1-77", "kind": "door_forced"},
        prev=envelope_hash(head),
        key=SigningKey.generate(),
    )
    rig.publish(event_topic("cabinet", SITE, DEVICE, "alarm.raised"), impostor.payload)
    changed = {**leak["envelope"], "data": {**leak["envelope"]["data"], "kind": "tamper"}}
    rig.publish(leak["topic"], canonical(changed))
    first.wait_for(lambda ls: len(shown(ls, DEVICE, verified=False)) >= 2, "two flagged")
    flagged = shown(first.snapshot(), DEVICE, verified=False)
    assert [x["envelope"]["data"] for x in flagged] == [impostor.fields["data"], changed["data"]]
    assert all("bad signature" in x["problem"] and "forged?" in x["problem"] for x in flagged)
    assert first.stop() == 0
    seen_first = shown(first.snapshot(), DEVICE)
    last_seen = max(seqs(seen_first))

    # While nobody watches, the cabinet goes on (a snapshot asked for, its telemetry).
    missed = rig.ctl("snapshot", "--device", DEVICE)
    assert missed.exit_code == 0, missed.output

    # The console comes back with its ledger; the next event shows the stretch it missed,
    # it asks the real agent for a resend, and the agent republishes it from its outbox.
    second = rig.watch("--key", str(rig.key_file), "--store", str(store))
    later = rig.ctl("snapshot", "--device", DEVICE)
    assert later.exit_code == 0, later.output

    def snapshot_answers() -> list[int]:
        return [
            e["seq"]
            for e in rig.events()
            if e["type"] == "command.applied" and e["data"]["name"] == "snapshot"
        ]

    rig.wire.wait_for(lambda: len(snapshot_answers()) == 2, 20, "both snapshot answers")
    missed_seq, top = snapshot_answers()
    assert last_seen < missed_seq < top, "nothing was missed: no gap to fill"
    second.wait_for(
        lambda ls: set(range(last_seen + 1, top + 1)) <= set(seqs(shown(ls, DEVICE))),
        "the missed stretch filled",
    )
    second.wait_for(
        lambda ls: any(
            x["type"] == "command.applied" and x["envelope"]["data"]["name"] == "resend"
            for x in shown(ls, DEVICE)
        ),
        "the agent's answer to the resend",
    )
    assert second.stop() == 0
    lines = second.snapshot()
    asks = [x for x in lines if x["kind"] == "resend"]
    assert asks and asks[0]["device"] == DEVICE and asks[0]["from_seq"] == last_seen + 1
    assert asks[0]["to_seq"] >= missed_seq
    answer = next(
        x["envelope"]["data"]
        for x in shown(lines, DEVICE)
        if x["type"] == "command.applied" and x["envelope"]["data"]["name"] == "resend"
    )
    assert (answer["from_seq"], answer["to_seq"]) == (asks[0]["from_seq"], asks[0]["to_seq"])
    assert not shown(lines, DEVICE, verified=False)
    again = shown(lines, DEVICE)
    assert all(x["problem"] is None for x in again), [x for x in again if x["problem"]]
    assert len(seqs(again)) == len(set(seqs(again))), "a duplicate was shown twice"
    assert min(seqs(again)) == last_seen + 1

    stored = max(seqs(again))
    verdict = rig.ctl("verify", str(store))
    assert verdict.exit_code == 0 and verdict.output == f"{stored} events, devices 1, OK\n"
    rig.assert_whole_chain()


# --- 4. several cabinets, one console --------------------------------------------------------

CABINETS = {  # device: site, scenario, the alarm kinds it raises
    "cab-b2-0001": ("chem-b2", "leak_and_tamper.jsonl", {"leak", "tamper"}),
    "cab-b2-0002": ("chem-b2", "voc_alarm_with_ventilation.jsonl", {"voc_high"}),
    "cab-c1-0003": (
        "chem-c1",
        "door_forced_and_held_open.jsonl",
        {"door_forced", "door_held_open"},
    ),
}


def test_an_operator_sees_the_alarms_of_several_cabinets_live_and_verified(rig: Rig) -> None:
    anywhere = policy_copy(rig.tmp, "policy-any.toml", (f'cabinet = "{DEVICE}"', 'cabinet = "*"'))
    configs = {d: rig.cabinet(d, site) for d, (site, _, _) in CABINETS.items()}
    watch = rig.watch()
    agents = {
        d: rig.start_agent(configs[d], policy=anywhere, scenario=SCENARIOS / scene, speed=40)
        for d, (_, scene, _) in CABINETS.items()
    }

    def alarms(ls: list[Line], device: str) -> set[str]:
        kinds = {
            x["envelope"]["data"]["kind"] for x in shown(ls, device) if x["type"] == "alarm.raised"
        }
        return kinds - HOST_ALARMS

    watch.wait_for(
        lambda ls: all(alarms(ls, d) >= kinds for d, (_, _, kinds) in CABINETS.items()),
        "every cabinet's alarms",
        timeout=40,
    )
    # Live: every alarm was on the console while all the cabinets were still running.
    assert all(agent.proc.poll() is None for agent in agents.values())
    for agent in agents.values():
        assert agent.stop() == 0, agent.log_text()
    watch.wait_for(
        lambda ls: all(any(x["type"] == "system.stopping" for x in shown(ls, d)) for d in CABINETS),
        "every cabinet's clean stop",
    )
    watch.wait_for(
        lambda ls: (
            {x["device"] for x in ls if x["kind"] == "status" and x["state"] == "offline"}
            >= set(CABINETS)
        ),
        "every cabinet offline",
    )
    assert watch.stop() == 0
    lines = watch.snapshot()
    assert not [x for x in lines if x["kind"] == "event" and not x["verified"]]
    assert all(x["problem"] is None for x in lines if x["kind"] == "status")
    for device, (site, _, kinds) in CABINETS.items():
        events = shown(lines, device)
        assert seqs(events) == list(range(1, len(events) + 1)), device
        assert all(x["problem"] is None for x in events), device
        assert all(x["topic"].startswith(f"cabinet/{site}/{device}/evt/") for x in events)
        assert alarms(lines, device) == kinds
        states = [x["state"] for x in lines if x["kind"] == "status" and x["device"] == device]
        assert states[0] == "online" and states[-1] == "offline", (device, states)
        rig.assert_whole_chain(device)
