"""The parts of the end-to-end tests of cabinetctl against real `cabinet-agent run`
processes on a real mosquitto: a cabinet agent, a watching operator, and the rig that
holds them (the `rig` fixture is in conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from agent.status import read_status
from agent.wire import (
    SigningKey,
    VerifyKey,
    WireError,
    build_command,
    canonical,
    command_topic,
    status_topic,
    verify_envelope,
)
from central.cli import cli
from tests.daemon.agent_process import POLICY, ROOT, keygen, sim_config, verified
from tests.support.broker import Broker
from tests.support.fixtures import Recorder

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
