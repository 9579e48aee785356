"""The benchmark's MQTT and HTTP clients for bench.central_ingest: the publisher, the
bare subscriber (the baseline, a child process), and the open-alarms reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.broker import HOST

WINDOW = 200  # publisher's QoS 1 window
BARE_GIVE_UP_S = 300.0


class Publisher:
    """One paho client driven from its own thread, QoS 1, a window of WINDOW in flight."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
        )
        self.client.max_inflight_messages_set(WINDOW)
        self.client.max_queued_messages_set(0)
        self.client.connect(HOST, port)
        self.client.loop_start()

    def publish_all(self, stream: list[tuple[str, bytes]], within_s: float = 300.0) -> None:
        """Publish all, then wait for every PUBACK: within `within_s` in all, never longer."""
        deadline = time.monotonic() + within_s
        infos = [self.client.publish(topic, payload, qos=1) for topic, payload in stream]
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise RuntimeError(
                    f"the broker did not acknowledge the stream within {within_s:g} s"
                )

    def publish_one(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def bare_subscriber(port: int, count: int) -> None:
    """Child process: receive `count` messages, print seconds from the first to the last."""
    got = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal got, first, last
        got += 1
        last = time.perf_counter()
        if got == 1:
            first = last
        if got >= count:
            done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=f"bench-bare-{os.getpid()}"
    )
    client.on_message = on_message
    client.on_subscribe = lambda *a: print("subscribed", flush=True)
    client.connect(HOST, port)
    client.subscribe("$share/cabinet-central/cabinet/+/+/evt/#", qos=1)
    client.loop_start()
    done.wait(600)
    print(json.dumps({"received": got, "seconds": last - first}), flush=True)
    client.loop_stop()


def bare_rate(port: int, stream: list[tuple[str, bytes]]) -> float:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.central_clients", "bare", str(port), str(len(stream))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    watchdog = threading.Timer(BARE_GIVE_UP_S, child.kill)  # a hung child: its readline ends
    watchdog.start()
    try:
        if child.stdout.readline().strip() != "subscribed":
            raise RuntimeError("the bare subscriber did not subscribe")
        publisher = Publisher(port)
        publisher.publish_all(stream)
        line = child.stdout.readline()
        publisher.close()
        if not line:
            raise RuntimeError(f"the bare subscriber gave no answer within {BARE_GIVE_UP_S:g} s")
        answer = json.loads(line)
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
    elapsed = max(answer["seconds"], 1e-6)  # from its first message to its last
    return float(answer["received"]) / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and every living process below it (its workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                stats[int(entry)] = handle.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
    tree, layer = {pid}, {pid}
    while layer:
        layer = {p for p, f in stats.items() if int(f[1]) in layer} - tree
        tree |= layer
    # fields after the name: state ppid ... utime (12th) stime (13th), 0-based 11, 12
    return sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats) / ticks


def wait_for_http(listen: str, serves: list[subprocess.Popen[bytes]], within_s: float) -> None:
    """Until `serve`'s HTTP port answers (its ingest may be subscribed before uvicorn
    listens): an alarm reader that met a refused connection would stop for good."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(f"http://{listen}/api/health", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered (503 while the ingest settles is an answer)
        except OSError:
            if time.monotonic() > deadline or any(s.poll() is not None for s in serves):
                raise RuntimeError(f"cabinet-central serve never listened on {listen}") from None
            time.sleep(0.05)


def open_alarms_reader(store: Any, listen: str, device: str) -> Any:
    """What a console sees as open alarms: `GET /api/alarms?state=open` when the web app
    is installed (a token of a fresh auditor login), else the store query it serves."""
    try:
        import central.web.app  # noqa: F401
    except ImportError:

        def from_store() -> set[str]:
            return {a.alarm for a in store.alarms("open", device=device)}

        return from_store
    store.add_user("bench-auditor", "p-bench", "auditor", None)
    token = store.create_token("bench-auditor")
    url = f"http://{listen}/api/alarms?state=open&device={device}"

    errors: list[str] = []

    def from_http() -> set[str]:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return {str(row["alarm"]) for row in json.loads(answer.read())}
        except OSError as exc:  # a slow or refused answer: not shown (yet); asked again
            errors.append(str(exc))
            return set()

    from_http.via = "http"  # type: ignore[attr-defined]
    from_http.errors = errors  # type: ignore[attr-defined]
    return from_http


if __name__ == "__main__":
    if sys.argv[1:2] == ["bare"]:
        bare_subscriber(int(sys.argv[2]), int(sys.argv[3]))
