"""The rig for `cabinet-central serve` tests: a config, child processes, fake cabinets.

`FakeFleet` publishes hand-signed envelopes of tests.central.cabinet.FakeCabinet to a
real mosquitto and answers the centre's commands as a cabinet would: `resend`
republishes the range from its record, anything else is answered with a signed
`command.applied` carrying the nonce and args. Real `cabinet-agent run` processes are
used by test_with_agent.py; this stand-in is for the cases an agent cannot be made to
produce (forgeries, a stream of 500 cabinets, a chosen gap).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.wire import Envelope, VerifyKey, check_signature, write_new_key
from tests.central.cabinet import FakeCabinet, write_registry
from tests.support.broker import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def wait_until(check: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    """Poll `check`; on timeout say what was awaited (a callable: the state at that time)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {said}")
        time.sleep(0.05)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every living (not zombie) process."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split() if stat else ["Z"]
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> set[int]:
    """Every living process below `pid` (serve's fork server and its judging workers)."""
    parents = _parents()
    found: set[int] = set()
    layer = {pid}
    while layer:
        layer = {child for child, parent in parents.items() if parent in layer} - found
        found |= layer
    return found


def alive(pids: set[int]) -> set[int]:
    return pids & _parents().keys()


class CentralRig:
    """central.toml, the registry and the central key in `tmp`; serve processes on demand."""

    def __init__(
        self,
        tmp: Path,
        broker_url: str,
        database_url: str,
        cabinets: Iterable[FakeCabinet],
        *,
        extra: str = "",
    ) -> None:
        self.tmp = tmp
        self.broker_url = broker_url
        self.database_url = database_url
        self.registry = write_registry(tmp / "devices.toml", *cabinets)
        self.key_path = tmp / "central.key"
        self.central_key = write_new_key(self.key_path)
        self.config = tmp / "central.toml"
        self.config.write_text(
            f'registry = "{self.registry}"\ncentral_key = "{self.key_path}"\n'
            f'state_dir = "{tmp / "state"}"\n[ingest]\nresend_grace_ms = 300\n'
            # one judging worker whatever the machine ("auto" is 0 on two cores or fewer)
            f"resend_retry_ms = 1000\nworkers = 1\n{extra}"
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def central_pub(self) -> VerifyKey:
        return self.central_key.public

    def env(self, listen: str | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "CENTRAL_BROKER_URL": self.broker_url,
            "CENTRAL_DATABASE_URL": self.database_url,
            "CENTRAL_HTTP_LISTEN": listen or f"127.0.0.1:{free_port()}",
        }

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "cabinet-central"), *args, "--config", str(self.config)],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
            check=False,
            cwd=ROOT,
        )

    def serve(self, name: str = "serve", listen: str | None = None) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [
                str(BIN / "cabinet-central"),
                "serve",
                "--config",
                str(self.config),
                "--log-format",
                "json",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(listen),
            cwd=ROOT,
        )
        self.processes.append(proc)
        return proc

    def serve_ready(
        self, name: str = "serve", listen: str | None = None
    ) -> subprocess.Popen[bytes]:
        """A serve process whose subscriptions the broker has granted, on both lanes.

        serve subscribes on two connections (alarms, everything else); an envelope
        published before the main lane's SUBACK reaches no subscriber and is gone, so
        one lane's "broker.subscribed" is not enough.
        """
        proc = self.serve(name, listen)
        wait_until(
            lambda: self.subscribed_lanes(name) >= {"main", "alarms"} or proc.poll() is not None,
            30,
            lambda: f"{name} to subscribe on both lanes; its log:\n{self.log_text(name)}",
        )
        assert proc.poll() is None, self.log_text(name)
        return proc

    def subscribed_lanes(self, name: str = "serve") -> set[str]:
        lanes = set()
        for line in self.log_text(name).splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line that is not JSON (a crash's output) is not a subscription
            if isinstance(entry, dict) and entry.get("event") == "broker.subscribed":
                lanes.add(str(entry.get("lane")))
        return lanes

    def log_text(self, name: str = "serve") -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class FakeFleet:
    """Cabinets on a real broker: publish their envelopes, answer the centre's commands."""

    def __init__(
        self, host: str, port: int, cabinets: Iterable[FakeCabinet], central: VerifyKey
    ) -> None:
        self.cabinets = {c.device: c for c in cabinets}
        self.central = central
        self.commands: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            client_id=f"fleet-{time.monotonic_ns()}",
        )
        self.client.on_message = self._on_message
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(host, port)
        self.client.loop_start()
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.subscribe("cabinet/+/+/cmd/+", qos=1)
        assert subscribed.wait(10), "no SUBACK from the broker"

    def publish(self, cabinet: FakeCabinet, *envelopes: Envelope) -> None:
        infos = [self.client.publish(cabinet.topic(e), e.payload, qos=1) for e in envelopes]
        for info in infos:
            info.wait_for_publish(10)

    def publish_raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def emit(self, cabinet: FakeCabinet, type: str, data: dict[str, Any] | None = None) -> Envelope:
        with self.lock:
            return cabinet.emit(type, data)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        command = json.loads(msg.payload)
        check_signature(command, self.central)  # a fake that believes anything proves nothing
        with self.lock:
            self.commands.append(command)
            cabinet = self.cabinets.get(command["device"])
            if cabinet is None:
                return
            if command["name"] == "resend":
                lo, hi = command["args"]["from_seq"], command["args"]["to_seq"]
                replay = cabinet.envelopes[lo - 1 : hi]
            else:
                data = {
                    "name": command["name"],
                    "nonce": command["nonce"],
                    "reason": None,
                    "args": command["args"],
                }
                replay = [cabinet.emit("command.applied", data)]
        for env in replay:
            client.publish(cabinet.topic(env), env.payload, qos=1)

    def resends(self) -> list[tuple[str, int, int]]:
        with self.lock:
            return [
                (c["device"], c["args"]["from_seq"], c["args"]["to_seq"])
                for c in self.commands
                if c["name"] == "resend"
            ]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
