"""`cabinet-agent run` end to end: simulated cabinet, real mosquitto, real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.daemon.agent_process import ROOT, AgentProcess, envelopes, keygen, sim_config, verified
from tests.support.fixtures import Recorder

STATUS = "cabinet/lab/cab-chem-0042/status"


def test_the_agent_publishes_a_scene_every_event_verifying_with_the_device_key(
    tmp_path, make_broker
):
    broker = make_broker()
    recorder = Recorder(broker, "cabinet/#").start()
    key = keygen(tmp_path)
    agent = AgentProcess(sim_config(tmp_path, broker.url), "two_person_withdrawal.jsonl")
    assert agent.wait(60) == 0, agent.log_text()
    recorder.wait_for(
        lambda: any(b'"offline"' in m.payload for m in recorder.on(STATUS)), 5, "offline status"
    )
    events = envelopes(recorder.snapshot())
    types = [e["type"] for e in events]
    for expected in [
        "system.started",
        "policy.applied",
        "access.pending",
        "access.granted",
        "lock.unlocked",
        "door.opened",
        "lock.locked",
        "door.closed",
        "inventory.withdrawal",
        "system.stopping",
    ]:
        assert expected in types, f"{expected} not published"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "a seq is missing"
    assert verified(events, key)
    withdrawal = next(e for e in events if e["type"] == "inventory.withdrawal")["data"]
    assert (withdrawal["amount_mg"], withdrawal["persons"]) == (25_000, ["p-1001", "p-1002"])
    births = [json.loads(m.payload) for m in recorder.on(STATUS)]
    assert births[0]["state"] == "online" and births[0]["pubkey"] == key.to_text()
    assert births[-1] == {"state": "offline", "device": "cab-chem-0042", "boot": 1}


def test_sigterm_mid_scene_stops_cleanly_and_a_restart_continues_at_the_next_seq(
    tmp_path, make_broker
):
    broker = make_broker()
    recorder = Recorder(broker, "cabinet/#").start()
    key = keygen(tmp_path)
    config = sim_config(tmp_path, broker.url)
    first = AgentProcess(config, "demo.jsonl", speed=5, exit_after=None)
    recorder.wait_for(
        lambda: any(e["type"] == "access.granted" for e in envelopes(recorder.snapshot())),
        30,
        "the first grant",
    )
    started = time.monotonic()
    first.terminate()
    assert first.wait(10) == 0, first.log_text()
    assert time.monotonic() - started < 5, "SIGTERM must stop the agent within 5 s"
    recorder.wait_for(
        lambda: any(b'"offline"' in m.payload for m in recorder.on(STATUS)),
        5,
        "clean offline status",
    )
    before = envelopes(recorder.snapshot())
    assert before[-1]["type"] == "system.stopping"
    assert [e["seq"] for e in before] == list(range(1, len(before) + 1))

    second = AgentProcess(config, "one_person_alone_is_refused.jsonl", speed=20)
    assert second.wait(60) == 0, second.log_text()
    recorder.wait_for(
        lambda: (
            envelopes(recorder.snapshot())[-1]["type"] == "system.stopping"
            and envelopes(recorder.snapshot())[-1]["boot"] == 2
        ),
        10,
        "second run's stop",
    )
    after = envelopes(recorder.snapshot())
    resumed = [e for e in after if e["boot"] == 2]
    assert resumed[0]["seq"] == before[-1]["seq"] + 1 and resumed[0]["type"] == "system.started"
    assert [e["seq"] for e in after] == list(range(1, len(after) + 1)), "nothing lost"
    assert verified(after, key), "one chain across both boots"


def test_what_the_broker_had_not_acknowledged_is_published_after_a_restart(tmp_path, make_broker):
    broker = make_broker()
    key = keygen(tmp_path)
    config = sim_config(tmp_path, "mqtt://127.0.0.1:9")  # nothing listens: offline run
    offline = AgentProcess(config, "two_person_withdrawal.jsonl", speed=20)
    assert offline.wait(60) == 0, offline.log_text()
    recorder = Recorder(broker, "cabinet/#").start()
    config.write_text(config.read_text().replace("mqtt://127.0.0.1:9", broker.url))
    online = AgentProcess(config, "one_person_alone_is_refused.jsonl", speed=20)
    assert online.wait(60) == 0, online.log_text()
    recorder.wait_for(
        lambda: any(
            e["boot"] == 2 and e["type"] == "system.stopping"
            for e in envelopes(recorder.snapshot())
        ),
        10,
        "both runs",
    )
    events = envelopes(recorder.snapshot())
    assert {e["boot"] for e in events} == {1, 2}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert verified(events, key)


def test_sighup_reloads_the_policy_file_and_records_it(tmp_path, make_broker):
    import signal

    broker = make_broker()
    recorder = Recorder(broker, "cabinet/#").start()
    keygen(tmp_path)
    agent = AgentProcess(sim_config(tmp_path, broker.url), "demo.jsonl", speed=1, exit_after=None)
    try:
        recorder.wait_for(
            lambda: any(e["type"] == "policy.applied" for e in envelopes(recorder.snapshot())),
            20,
            "start",
        )
        agent.proc.send_signal(signal.SIGHUP)
        recorder.wait_for(
            lambda: any(e["type"] == "system.reloaded" for e in envelopes(recorder.snapshot())),
            10,
            "reload record",
        )
        types = [e["type"] for e in envelopes(recorder.snapshot())]
        # the same file again: version 7 is not newer, so it is refused, and that is recorded too
        assert "policy.rejected" in types
    finally:
        agent.terminate()
        assert agent.wait(10) == 0


def test_status_shows_a_person_at_the_cabinet_the_live_state(tmp_path, make_broker):
    broker = make_broker()
    keygen(tmp_path)
    config = sim_config(tmp_path, broker.url)
    agent = AgentProcess(config, "demo.jsonl", speed=1, exit_after=None)
    try:
        deadline = time.monotonic() + 20
        out = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(
                [sys.executable, "-m", "agent.cli", "status", "--config", str(config)],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            out = proc.stdout
            if proc.returncode == 0 and "pending   " in out:
                break
            time.sleep(0.3)
        assert "door      closed" in out and "policy    version 7" in out
        assert "pending   p-1001 on reader A" in out, out
        assert "uplink    connected" in out
        assert "events_committed" in out and "uplink_published" in out  # counters, reported
    finally:
        agent.terminate()
        assert agent.wait(10) == 0


def test_the_demo_command_runs_a_short_scene_and_exits_0():
    proc = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **__import__("os").environ,
            "DEMO_SPEED": "20",
            "DEMO_SCENARIO": "examples/scenarios/two_person_withdrawal.jsonl",
        },
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "events, devices 1, OK" in proc.stdout
    assert '"type": "inventory.withdrawal"' in proc.stdout and '"verified": true' in proc.stdout


def test_heartbeats_report_uptime_backlog_uplink_and_sensor_freshness(tmp_path, make_broker):
    broker = make_broker()
    recorder = Recorder(broker, "cabinet/#").start()
    keygen(tmp_path)
    agent = AgentProcess(
        sim_config(tmp_path, broker.url, heartbeat_s=1), "demo.jsonl", speed=1, exit_after=None
    )
    try:
        recorder.wait_for(
            lambda: (
                len([e for e in envelopes(recorder.snapshot()) if e["type"] == "system.heartbeat"])
                >= 2
            ),
            15,
            "two heartbeats",
        )
    finally:
        agent.terminate()
        assert agent.wait(10) == 0
    beat = [e for e in envelopes(recorder.snapshot()) if e["type"] == "system.heartbeat"][-1]
    data = beat["data"]
    assert {"uptime_s", "outbox_unsent", "oldest_unsent_age_s", "uplink", "sensors"} <= set(data)
    assert data["uplink"] == "connected" and data["policy_version"] == 7
    assert "voc" in data["sensors"] and "scale:3" in data["sensors"]
    assert all(age <= 2 for age in data["sensors"].values()), "the simulated sensors are fresh"
