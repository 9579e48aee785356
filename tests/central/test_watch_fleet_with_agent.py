"""An operator watching several real cabinets (real `cabinet-agent run` processes on a real
mosquitto) sees every alarm live and verified, each under its own cabinet."""

from __future__ import annotations

import pytest

from tests.central.agent_rig import (
    DEVICE,
    HOST_ALARMS,
    Line,
    Rig,
    policy_copy,
    seqs,
    shown,
)
from tests.daemon.agent_process import SCENARIOS

pytestmark = pytest.mark.realpart


# --- 4. several cabinets, one console --------------------------------------------------------

CABINETS = {  # device: site, scenario, the alarm kinds it raises
    "cab-b2-0001": ("chem-b2", "leak_and_tamper.jsonl", {"leak", "tamper"}),
    "cab-b2-0002": ("chem-b2", "voc_alarm_with_ventilation.jsonl", {"voc_high"}),
    "cab-c1-0003": (
        "chem-c1",
        "door_forced_and_held_open.jsonl",
        {"door_forced", "door_held_open"},
    ),
}


def test_an_operator_sees_the_alarms_of_several_cabinets_live_and_verified(rig: Rig) -> None:
    anywhere = policy_copy(rig.tmp, "policy-any.toml", (f'cabinet = "{DEVICE}"', 'cabinet = "*"'))
    configs = {d: rig.cabinet(d, site) for d, (site, _, _) in CABINETS.items()}
    watch = rig.watch()
    agents = {
        d: rig.start_agent(configs[d], policy=anywhere, scenario=SCENARIOS / scene, speed=40)
        for d, (_, scene, _) in CABINETS.items()
    }

    def alarms(ls: list[Line], device: str) -> set[str]:
        kinds = {
            x["envelope"]["data"]["kind"] for x in shown(ls, device) if x["type"] == "alarm.raised"
        }
        return kinds - HOST_ALARMS

    watch.wait_for(
        lambda ls: all(alarms(ls, d) >= kinds for d, (_, _, kinds) in CABINETS.items()),
        "every cabinet's alarms",
        timeout=40,
    )
    # Live: every alarm was on the console while all the cabinets were still running.
    assert all(agent.proc.poll() is None for agent in agents.values())
    for agent in agents.values():
        assert agent.stop() == 0, agent.log_text()
    watch.wait_for(
        lambda ls: all(any(x["type"] == "system.stopping" for x in shown(ls, d)) for d in CABINETS),
        "every cabinet's clean stop",
    )
    watch.wait_for(
        lambda ls: (
            {x["device"] for x in ls if x["kind"] == "status" and x["state"] == "offline"}
            >= set(CABINETS)
        ),
        "every cabinet offline",
    )
    assert watch.stop() == 0
    lines = watch.snapshot()
    assert not [x for x in lines if x["kind"] == "event" and not x["verified"]]
    assert all(x["problem"] is None for x in lines if x["kind"] == "status")
    for device, (site, _, kinds) in CABINETS.items():
        events = shown(lines, device)
        assert seqs(events) == list(range(1, len(events) + 1)), device
        assert all(x["problem"] is None for x in events), device
        assert all(x["topic"].startswith(f"cabinet/{site}/{device}/evt/") for x in events)
        assert alarms(lines, device) == kinds
        states = [x["state"] for x in lines if x["kind"] == "status" and x["device"] == device]
        assert states[0] == "online" and states[-1] == "offline", (device, states)
        rig.assert_whole_chain(device)
