"""A stand-in cabinet on a real broker, for what a real agent cannot be made to do.

The contract (policy push, remote commands, resend, watch against real events) is tested
against real `cabinet-agent run` processes in test_with_agent.py. This fake stays for
test_live.py's cases that only it produces on demand: an answer forged with another key
just before the real one, a device that never answers, a live stream with a hole in it,
tampered copies published before the genuine envelope.

It verifies a command's signature with the pinned central key, its device, topic and
expiry, refuses a replayed nonce, then answers `command.applied` with a correctly signed
and chained event, and republishes the range on `resend`. It does not check `args` and
does not take policies: that is the real agent's part (a lenient fake hid that the agent
refuses the `by` that `cabinetctl approve` sends; see test_with_agent.py).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.wire import VerifyKey, WireError, check_signature
from tests.central.cabinet import FakeCabinet
from tests.support.broker import Broker


class FakeDevice:
    def __init__(
        self, broker: Broker, cabinet: FakeCabinet, central: VerifyKey, *, answer: bool = True
    ) -> None:
        self.cabinet = cabinet
        self.central = central
        self.answer = answer
        self.commands: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.forge_first: FakeCabinet | None = None  # answer once with this wrong key first
        self._seen_nonces: set[str] = set()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"dev-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(10), "fake device did not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, index: int) -> None:
        env = self.cabinet.envelopes[index]
        self.client.publish(self.cabinet.topic(env), env.payload, qos=1).wait_for_publish(5)

    def publish_raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    # --- paho thread ---------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        c = self.cabinet
        client.subscribe(f"cabinet/{c.site}/{c.device}/cmd/+", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            try:
                command = json.loads(msg.payload)
                self._check(command, msg.topic)
            except (ValueError, WireError) as exc:
                self.refused.append(str(exc))
                return
            self.commands.append(command)
            if self.answer:
                self._dispatch(command)

    def _check(self, command: dict[str, Any], topic: str) -> None:
        check_signature(command, self.central)
        if command["device"] != self.cabinet.device or not topic.endswith(command["name"]):
            raise WireError("not for this device / topic")
        if command["expires_at_ms"] < time.time() * 1000:
            raise WireError("expired")
        if command["nonce"] in self._seen_nonces:
            raise WireError("replayed")
        self._seen_nonces.add(command["nonce"])

    def _dispatch(self, command: dict[str, Any]) -> None:
        name, nonce, args = command["name"], command["nonce"], command["args"]
        if name == "resend":
            self._answer("command.applied", {"name": name, "nonce": nonce, **args})
            for env in self.cabinet.envelopes[args["from_seq"] - 1 : args["to_seq"]]:
                self.client.publish(self.cabinet.topic(env), env.payload, qos=1)
        else:
            self._answer("command.applied", {"name": name, "nonce": nonce, **args})

    def _answer(self, kind: str, data: dict[str, Any]) -> None:
        if self.forge_first is not None:
            fake = self.forge_first.emit(kind, data)
            self.forge_first = None
            self.client.publish(self.cabinet.topic(fake), fake.payload, qos=1)
        env = self.cabinet.emit(kind, data)
        self.client.publish(self.cabinet.topic(env), env.payload, qos=1)
