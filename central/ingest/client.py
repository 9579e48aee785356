"""The ingest's broker connection: paho 2, MQTT 5, manual acknowledgements.

Subscriptions:
- `$share/cabinet-central/{prefix}/+/+/evt/#` (QoS 1): every `serve` process on one
  broker joins the same share group, so each event goes to one of them;
- `{prefix}/+/+/status` (QoS 1, *not* shared): a broker sends no retained messages on a
  shared subscription (MQTT 5, 4.8.2), and each process should know every cabinet's
  presence; recording a status twice is harmless.

`manual_ack=True`: a message is acknowledged (PUBACK) only when the caller says so,
i.e. after the transaction holding it committed. A process killed before that never
acknowledged it; what the broker does not redeliver, the gap detection asks the cabinet
for again (`resend`). paho reconnects on its own; on every (re)connect the
subscriptions are made again (a clean session has none).

The same connection publishes the centre's signed commands, waiting for the broker's
PUBACK and checking its reason code.
"""

from __future__ import annotations

import itertools
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.errors import CentralError
from config.agent import BrokerConfig

log = structlog.get_logger("central.ingest")
SHARE_GROUP = "cabinet-central"


@dataclass(frozen=True, order=True)
class Incoming:
    """One received message; ordered for the queue: alarms first, then by arrival."""

    rank: int  # 0: an alarm topic, 1: anything else
    order: int  # arrival number: acknowledgements go out in this order
    topic: str = field(compare=False)
    payload: bytes = field(compare=False)
    mid: int = field(compare=False)
    qos: int = field(compare=False)
    lane: str = field(compare=False, default="main")  # which connection to acknowledge on


class IngestClient:
    """One broker connection of the ingest. Two per process:
    - lane "main": every event (shared) and every status (unshared), and the commands;
    - lane "alarms": `…/evt/alarm` only, in a share group of its own, so an alarm never
      waits behind a backlog of telemetry in one socket. Each alarm thus arrives twice;
      the second copy is a duplicate like any redelivery.
    Both put into one queue, where an alarm overtakes everything else (docs/central.md,
    "Ingest guarantees": a new alarm is never delayed behind a drain); acknowledgements
    still go out per connection in arrival order (pipeline.InOrderAcks).
    """

    def __init__(
        self,
        broker: BrokerConfig,
        prefix: str,
        *,
        lane: str = "main",
        messages: queue.PriorityQueue[Incoming] | None = None,
    ) -> None:
        self.prefix = prefix
        self.lane = lane
        self.messages: queue.PriorityQueue[Incoming] = messages or queue.PriorityQueue()
        self._arrivals = itertools.count()
        self._cond = threading.Condition()
        self._connected = False
        self._acks: dict[int, Any] = {}
        client_id = broker.client_id or f"cabinet-central-{socket.gethostname()}-{os.getpid()}"
        if lane != "main":
            client_id = f"{client_id}-{lane}"
        self._persistent = broker.client_id is not None and broker.session_expiry_s > 0
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._broker = broker
        if broker.url.startswith("mqtts://"):
            try:
                self._client.tls_set(
                    ca_certs=_text(broker.ca_file),
                    certfile=_text(broker.cert_file),
                    keyfile=_text(broker.key_file),
                )
            except (OSError, ValueError) as exc:
                raise CentralError(f"broker TLS setup: {exc}") from None
        if broker.username:
            password = None
            if broker.password_file is not None:
                try:
                    password = broker.password_file.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise CentralError(f"broker password_file: {exc.strerror}") from None
            self._client.username_pw_set(broker.username, password)
        self._client.reconnect_delay_set(broker.reconnect_min_s, broker.reconnect_max_s)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe

    @property
    def filters(self) -> list[str]:
        if self.lane == "alarms":
            return [f"$share/{SHARE_GROUP}-alarms/{self.prefix}/+/+/evt/alarm"]
        return [
            f"$share/{SHARE_GROUP}/{self.prefix}/+/+/evt/#",
            f"{self.prefix}/+/+/status",
        ]

    def start(self) -> None:
        parts = urlsplit(self._broker.url)
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        # connect_async: a broker that is down at start is retried by paho's loop.
        # A persistent session only under a configured, stable client id: the broker keeps
        # routing a share of the stream to an offline session, which only pays off if the
        # same process comes back for it (systemd restarts it) before session_expiry_s.
        persistent = self._persistent
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if persistent:
            props.SessionExpiryInterval = self._broker.session_expiry_s
        self._client.connect_async(
            parts.hostname or "",
            port,
            keepalive=self._broker.keepalive_s,
            clean_start=not persistent,
            properties=props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    def wait_connected(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._connected:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def ack(self, message: Incoming) -> None:
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> None:
        """Publish QoS 1 and wait for the broker's PUBACK; CentralError if it is refused."""
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise CentralError(f"publish to {topic}: {mqtt.error_string(info.rc)}")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while info.mid not in self._acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CentralError(f"no PUBACK for {topic} within {timeout_s:g} s")
                self._cond.wait(left)
            code = self._acks.pop(info.mid)
        if code is not None and code.is_failure:
            raise CentralError(f"broker refused the publish to {topic}: {code}")

    # --- paho's thread -------------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            log.warning("broker.refused", reason=str(rc))
            return
        client.subscribe([(f, 1) for f in self.filters])
        with self._cond:
            self._connected = True
            self._cond.notify_all()
        log.info("broker.connected", url=self._broker.url)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        refused = [str(c) for c in codes if c.is_failure]
        if refused:
            log.error("broker.subscription_refused", reasons=refused, filters=self.filters)
        else:
            log.info("broker.subscribed", lane=self.lane, filters=self.filters)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()
        log.warning("broker.disconnected", reason=str(rc))

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        rank = 0 if "/evt/alarm" in msg.topic else 1
        order = next(self._arrivals)
        self.messages.put(
            Incoming(rank, order, msg.topic, bytes(msg.payload), msg.mid, msg.qos, self.lane)
        )

    def _on_publish(self, client: Any, userdata: Any, mid: int, code: Any, props: Any) -> None:
        with self._cond:
            self._acks[mid] = code
            self._cond.notify_all()


def _text(path: Any) -> str | None:
    return str(path) if path is not None else None
