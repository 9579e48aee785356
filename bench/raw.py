"""The baselines every figure is divided by: bare paho-mqtt QoS 1 against the same broker,
and (for the latencies) a bare page flush on the agent's disk.

The fastest way this machine can use paho: one thread that publishes and runs paho's
loop itself (no `loop_start()` thread to bounce the GIL with), the same window, topic
shape and payload size as the agent. Nothing is signed, stored or marked.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
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


class FsyncProbe:
    """The storage's half of the floor: one 4 KiB page written and `fdatasync`ed in the
    agent's state directory, as bare as it gets (no SQLite, no signing).

    The write-ahead rule puts one such flush before every output and every publish, and
    on this kind of machine its cost depends on how long the disk was idle before (a few
    tenths of a millisecond back to back, several after 10 ms of quiet): so the latency
    benchmarks probe it in the same run, at the same moments of their cycle.
    """

    PAGE = 4096
    PAGES = 256

    def __init__(self, directory: Path) -> None:
        self._fd = os.open(directory / "fsync-probe", os.O_RDWR | os.O_CREAT, 0o600)
        # Written in full and flushed once, so a probe overwrites in place (no size
        # change to journal), as the outbox's reused WAL mostly does.
        os.pwrite(self._fd, b"\0" * (self.PAGE * self.PAGES), 0)
        os.fsync(self._fd)
        self._page = b"p" * self.PAGE
        self._n = 0

    def latency(self) -> float:
        """Seconds for one page write plus its fdatasync."""
        self._n = (self._n + 1) % self.PAGES
        t0 = time.perf_counter()
        os.pwrite(self._fd, self._page, self._n * self.PAGE)
        os.fdatasync(self._fd)
        return time.perf_counter() - t0

    def close(self) -> None:
        os.close(self._fd)
