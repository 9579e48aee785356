"""The broker connection `cabinetctl` uses: paho 2, MQTT 5, QoS 1, optional TLS.

Thin on purpose: connect, subscribe (waiting for SUBACK), publish (waiting for PUBACK
and checking its reason code: a broker ACL answers 0x87 "not authorized" and drops the
message, which must not be reported as sent), and a queue of received messages that
the caller drains in its own thread.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.wire.mqtt import BrokerAccess, BrokerSetupError, paho_client
from central.errors import CentralError

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


@dataclass(frozen=True)
class BrokerOptions:
    url: str = DEFAULT_BROKER
    ca: Path | None = None
    cert: Path | None = None
    cert_key: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    client_id: str | None = None
    session_expiry_s: int = 0  # > 0: the broker queues QoS 1 messages while we are away
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


class BrokerConnection:
    def __init__(self, options: BrokerOptions) -> None:
        self.options = options
        self.messages: queue.Queue[Message] = queue.Queue()
        self._cond = threading.Condition()
        self._connected = False
        self._failure: str | None = None
        self._acks: dict[int, Any] = {}
        self._filters: list[str] = []
        parts = urlsplit(options.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise CentralError(f"broker {options.url!r}: expected mqtt://host:port or mqtts://")
        self._host = parts.hostname
        try:
            self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError:
            raise CentralError(f"broker {options.url!r}: bad port") from None
        access = BrokerAccess(
            tls=parts.scheme == "mqtts",
            ca_file=options.ca,
            cert_file=options.cert,
            key_file=options.cert_key,
            username=options.username,
            password_file=options.password_file,
        )
        client_id = options.client_id or f"cabinetctl-{uuid.uuid4().hex[:12]}"
        try:
            self._client = paho_client(client_id, access)
        except BrokerSetupError as exc:
            raise CentralError(str(exc)) from None
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_ack
        self._client.on_subscribe = self._on_ack

    # --- life cycle ------------------------------------------------------------------

    def connect(self) -> BrokerConnection:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        clean = self.options.session_expiry_s == 0
        if not clean:
            props.SessionExpiryInterval = self.options.session_expiry_s
        try:
            self._client.connect(
                self._host, self._port, keepalive=30, clean_start=clean, properties=props
            )
        except (OSError, ValueError) as exc:
            raise CentralError(f"cannot reach broker {self.options.url}: {exc}") from None
        self._client.loop_start()
        self._wait(lambda: self._connected, f"no connection to broker {self.options.url}")
        return self

    def close(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    def __enter__(self) -> BrokerConnection:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    # --- operations ------------------------------------------------------------------

    def subscribe(self, filters: list[str]) -> None:
        result, mid = self._client.subscribe([(f, 1) for f in filters])
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise CentralError(f"subscribe failed: {mqtt.error_string(result)}")
        self._filters = list(filters)
        codes = self._wait_ack(mid, "subscription")
        refused = [f for f, code in zip(filters, codes, strict=False) if code.is_failure]
        if refused:
            raise CentralError(f"broker refused the subscription to {', '.join(refused)}")

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout_s: float | None = None
    ) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise CentralError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        code = self._wait_ack(info.mid, f"the broker's acknowledgement of {topic}", timeout_s)
        if code.is_failure:
            raise CentralError(f"broker refused the publish to {topic}: {code}")

    # --- callbacks (paho's thread) ---------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        with self._cond:
            if rc.is_failure:
                self._failure = f"broker refused the connection: {rc}"
            else:
                self._connected = True
                if self._filters:
                    # paho reconnects by itself; a clean session has lost our subscriptions.
                    client.subscribe([(f, 1) for f in self._filters])
            self._cond.notify_all()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        with self._cond:
            self._connected = False
            if rc.is_failure and self._failure is None:
                self._failure = f"disconnected by the broker: {rc}"
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_ack(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._cond:
            self._acks[mid] = codes
            self._cond.notify_all()

    # --- internals -------------------------------------------------------------------

    def _wait(self, done: Any, what: str, timeout_s: float | None = None) -> None:
        timeout_s = self.options.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not done():
                if self._failure is not None and not self._connected:
                    raise CentralError(f"{what}: {self._failure}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CentralError(f"{what} within {timeout_s:g} s")
                self._cond.wait(min(left, 0.1))

    def _wait_ack(self, mid: int, what: str, timeout_s: float | None = None) -> Any:
        self._wait(lambda: mid in self._acks, f"no answer to {what}", timeout_s)
        with self._cond:
            return self._acks.pop(mid)
