"""pytest fixtures and a recording MQTT client on top of tests.support.broker.

Use from a test module or a conftest.py below tests/:

    from tests.support.fixtures import broker_certs, make_broker, recorder  # noqa: F401

`make_broker(tls=..., acl=..., passwords=..., persistence=...)` starts a fresh mosquitto
per call (about 20 ms) and stops every one at the end of the test; the CA and server
certificate are made once per session.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.broker import Broker, CertAuthority


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic()


class Recorder:
    """An MQTT 5 client on a broker's plain listener that keeps every message it gets.

    `persistent=True` connects with clean_start false and a session expiry, so the broker
    keeps its QoS 1 subscription and queue across a disconnect (and across a broker
    restart when the broker has persistence).
    """

    def __init__(
        self, broker: Broker, *topics: str, persistent: bool = False, client_id: str | None = None
    ) -> None:
        self.topics = topics or ("#",)
        self.messages: list[Received] = []
        self.connects = 0
        self.subacks = 0  # granted SUBACKs, over every connection
        self._cond = threading.Condition()
        self._persistent = persistent
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"rec-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        # paho types these as int but computes with floats; 1 s would slow restart tests.
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
        self._broker = broker

    def start(self) -> Recorder:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self._persistent:
            props.SessionExpiryInterval = 3600
        self.client.connect(
            self._broker.host,
            self._broker.port,
            keepalive=10,
            clean_start=not self._persistent,
            properties=props,
        )
        self.client.loop_start()
        # Subscribed, not merely connected: a message published before the SUBACK may
        # reach no subscriber, and the test would wait for it in vain.
        self.wait_for(lambda: self.subacks >= len(self.topics), 10, "recorder subscribed")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        if rc.is_failure:
            return
        for topic in self.topics:
            client.subscribe(topic, qos=1)
        with self._cond:
            self.connects += 1
            self._cond.notify_all()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any = None
    ) -> None:
        if not any(code.is_failure for code in codes):
            with self._cond:
                self.subacks += 1
                self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(
                Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic())
            )
            self._cond.notify_all()

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.messages)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.snapshot() if m.topic == topic]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str = "") -> None:
        """Wait until predicate() holds (re-checked on every message and every 0.1 s)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._cond.wait(min(left, 0.1))


@pytest.fixture(scope="session")
def broker_certs(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority(tmp_path_factory.mktemp("mqtt-ca"))


@pytest.fixture
def make_broker(tmp_path: Path, broker_certs: CertAuthority) -> Iterator[Callable[..., Broker]]:
    started: list[Broker] = []

    def make(**options: Any) -> Broker:
        broker = Broker(tmp_path / f"broker{len(started)}", broker_certs, **options)
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def recorder() -> Iterator[Callable[..., Recorder]]:
    """`recorder(broker, "topic/#", persistent=False)` -> a started Recorder."""
    made: list[Recorder] = []

    def make(broker: Broker, *topics: str, **options: Any) -> Recorder:
        rec = Recorder(broker, *topics, **options).start()
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.stop()
