"""The baseline every figure is divided by: bare paho-mqtt QoS 1 against the same broker.

The fastest way this machine can use paho: one thread that publishes and runs paho's
loop itself (no `loop_start()` thread to bounce the GIL with), the same window, topic
shape and payload size as the agent. Nothing is signed, stored or marked.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.broker import HOST


class RawError(RuntimeError):
    pass


@dataclass(frozen=True)
class RawThroughput:
    msgs: int
    seconds: float
    cpu_s: float  # of this process while measuring: paho is all that runs

    @property
    def per_s(self) -> float:
        return self.msgs / self.seconds


def process_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


class RawClient:
    """One paho client driven from the calling thread; counts PUBACKs by mid."""

    def __init__(self, port: int, window: int) -> None:
        self.acked = 0
        self.acked_at: dict[int, float] = {}
        self.track = False
        self._connected = False
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(window)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect(HOST, port, keepalive=30)
        deadline = time.monotonic() + 10
        while not self._connected:
            self.client.loop(timeout=0.05)
            if time.monotonic() > deadline:
                raise RawError("raw paho client did not connect")

    def _on_connect(self, *args: Any) -> None:
        self._connected = True

    def _on_publish(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        self.acked += 1
        if self.track:
            self.acked_at[mid] = time.perf_counter()

    def puback_latency(self, topic: str, payload: bytes) -> float:
        """Seconds from publish() to its PUBACK callback, this message alone in flight."""
        self.track = True
        t0 = time.perf_counter()
        info = self.client.publish(topic, payload, qos=1)
        while info.mid not in self.acked_at:
            self.client.loop(timeout=0.05)
        return self.acked_at.pop(info.mid) - t0

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop(timeout=0.05)


def raw_throughput(
    port: int, topic: str, payload: bytes, window: int, seconds: float
) -> RawThroughput:
    """QoS 1 msg/s with at most `window` unacknowledged, for about `seconds`."""
    raw = RawClient(port, window)
    try:
        sent = 0
        cpu = process_cpu_s()
        started = time.perf_counter()
        stop_at = started + seconds
        while True:
            while sent - raw.acked < window and time.perf_counter() < stop_at:
                raw.client.publish(topic, payload, qos=1)
                sent += 1
            if time.perf_counter() >= stop_at and raw.acked >= sent:
                break
            raw.client.loop(timeout=0.01)
        return RawThroughput(raw.acked, time.perf_counter() - started, process_cpu_s() - cpu)
    finally:
        raw.close()
