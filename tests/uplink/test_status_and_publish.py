"""Status topic (birth, Last Will, clean offline) and plain publishing against mosquitto."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from agent import wire
from tests.support.broker import Broker
from tests.uplink.rig import (
    DEVICE,
    SITE,
    broker_config,
    draft,
    make_rig,
    seqs_of,
    topic,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]


def test_events_are_published_in_order_and_marked_sent(tmp_path, make_broker, recorder):
    broker = make_broker(tls=False)
    rec = recorder(broker, topic("#"))
    rig = make_rig(tmp_path, broker_config(broker))
    rig.uplink.start()
    try:
        rig.emit(*[draft() for _ in range(50)])
        rig.emit(draft("door.opened"), draft("env.reading", voc_ppb=3))
        wait_until(lambda: rig.outbox.stats().unsent == 0, 10, "all marked sent")
        events = [m for m in rec.snapshot() if "/evt/" in m.topic]
        assert seqs_of([m.payload for m in events]) == list(range(1, 53))
        assert {m.topic for m in events} == {
            topic("evt/access"),
            topic("evt/door"),
            topic("evt/env"),
        }
        stored = rig.outbox.range(1, 52)
        assert [m.payload for m in events] == [s.payload for s in stored]  # bytes exactly
        assert rig.uplink.state == "connected"
        stats = rig.uplink.stats()
        assert stats["acked"] == 52 and stats["unsent"] == 0 and stats["in_flight"] == 0
    finally:
        rig.close()


def test_birth_is_retained_and_stop_leaves_a_retained_clean_offline(
    tmp_path, make_broker, recorder
):
    broker = make_broker(tls=False)
    rig = make_rig(tmp_path, broker_config(broker))
    rig.emit(draft(), draft())
    rig.uplink.start()
    wait_until(lambda: rig.outbox.stats().unsent == 0, 10, "drained")
    late = recorder(broker, topic("status"))  # subscribes after the birth: gets the retained
    late.wait_for(lambda: len(late.messages) >= 1, 5, "retained birth")
    birth = json.loads(late.messages[0].payload)
    assert late.messages[0].retain
    assert birth == {
        "state": "online",
        "device": DEVICE,
        "boot": rig.outbox.boot,
        "last_seq": 2,
        "pubkey": rig.device_key.public.to_text(),
        "version": "test",
    }
    rig.uplink.stop(timeout=5)
    assert rig.uplink.state == "disconnected"
    after = recorder(broker, topic("status"))
    after.wait_for(lambda: len(after.messages) >= 1, 5, "retained offline")
    assert after.messages[0].retain
    assert json.loads(after.messages[0].payload) == {
        "state": "offline",
        "device": DEVICE,
        "boot": rig.outbox.boot,
    }
    rig.outbox.close()
    rig.nonces.close()


def _spawn_agent(broker: Broker, state_dir: Path, tls: bool = True) -> subprocess.Popen[str]:
    cfg = broker_config(broker, tls=tls)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    state_dir.mkdir(parents=True, exist_ok=True)
    # The child's log goes to a file: a failure to connect then says why (_wait_line).
    with (state_dir / "child.log").open("w") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("agent_proc.py")),
                str(state_dir),
                cfg.model_dump_json(),
                DEVICE,
                SITE,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )


def _wait_line(proc: subprocess.Popen[str], expected: str, timeout: float = 30.0) -> None:
    """Wait for the child to print `expected`; never block the test run for ever."""
    assert proc.stdout is not None
    stream = proc.stdout
    found = threading.Event()
    seen: list[str] = []  # structlog writes to stdout: the child's log is here too

    def read() -> None:
        for line in stream:
            seen.append(line)
            if line.strip() == expected:
                found.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not found.wait(timeout):
        log_path = Path(str(proc.args[2])) / "child.log"  # type: ignore[index]
        stderr = log_path.read_text()[-2000:] if log_path.exists() else "(none)"
        raise AssertionError(
            f"child did not print {expected!r} within {timeout} s "
            f"(exit code {proc.poll()}); its stdout ends:\n{''.join(seen[-30:])}\n"
            f"its stderr ends:\n{stderr}"
        )


def test_last_will_is_published_when_the_agent_process_is_killed(tmp_path, make_broker, recorder):
    broker = make_broker(tls=True)
    rec = recorder(broker, topic("status"), topic("evt/#"))
    proc = _spawn_agent(broker, tmp_path / "state")
    try:
        _wait_line(proc, "connected")
        rec.wait_for(
            lambda: any(
                json.loads(m.payload)["state"] == "online" for m in rec.on(topic("status"))
            ),
            5,
            "birth",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        rec.wait_for(
            lambda: json.loads(rec.on(topic("status"))[-1].payload)["state"] == "offline",
            5,
            "last will",
        )
        will = json.loads(rec.on(topic("status"))[-1].payload)
        assert set(will) == {"state", "device", "boot"} and will["device"] == DEVICE
    finally:
        proc.kill()
        proc.wait()
    late = recorder(broker, topic("status"))  # the Will was published retained
    late.wait_for(lambda: len(late.messages) >= 1, 5, "retained will")
    assert json.loads(late.messages[0].payload)["state"] == "offline"


def test_sigterm_stops_cleanly_with_offline_and_events_sent(tmp_path, make_broker, recorder):
    broker = make_broker(tls=True)
    rec = recorder(broker, topic("status"), topic("evt/#"))
    proc = _spawn_agent(broker, tmp_path / "state")
    try:
        _wait_line(proc, "connected")
        rec.wait_for(lambda: len(rec.on(topic("evt/system"))) >= 1, 5, "started event")
        proc.send_signal(signal.SIGTERM)
        _wait_line(proc, "stopped")
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
    states = [json.loads(m.payload)["state"] for m in rec.on(topic("status"))]
    assert states[-1] == "offline" and "online" in states
    started = json.loads(rec.on(topic("evt/system"))[0].payload)
    assert started["type"] == "system.started"
    wire.parse_envelope(rec.on(topic("evt/system"))[0].payload)
