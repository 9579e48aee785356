"""cabinetctl approve against the real agent over a real mosquitto: the remote second
person is checked against the cabinet's policy before anything is signed (each refusal
with its message, nothing sent), refused by the cabinet in its words when sent unchecked,
and applied as the second person of the pair."""

from __future__ import annotations

import pytest

from agent.wire import command_topic
from tests.central.agent_rig import DATA, DEVICE, SITE, Rig, policy_copy

pytestmark = pytest.mark.realpart


def test_cabinetctl_approve_stands_in_as_the_remote_second_person(rig: Rig) -> None:
    # Two keepers needed, remote approval allowed, and a safety officer who is no keeper.
    policy = policy_copy(
        rig.tmp,
        "policy-two-keepers.toml",
        ("pair_window_s = 30", "pair_window_s = 36000"),
        ('pair = "keeper+any"', 'pair = "two-keepers"'),
    )
    with policy.open("a") as more:
        more.write(SAFETY_ONLY)
    config = rig.cabinet()
    rig.start_agent(config, policy=policy, scenario=DATA / "leak_and_keeper_waiting.jsonl")
    rig.wait_online(boot=1)
    rig.wait_event(lambda e: e["type"] == "access.pending", "the keeper's badge")
    named = ("approve", "--device", DEVICE, "--person", "p-1003")
    checked = (*named, "--policy", str(policy))

    def refused(*args: str) -> str:
        result = rig.ctl(*args)
        assert result.exit_code == 1, result.output
        return result.stderr

    assert "did you mean p-1001 (Zhang Wei)?" in refused(*checked, "--by", "Zhang Wei")
    assert "did you mean p-1001 (Zhang Wei)?" in refused(*checked, "--by", "p-10001")
    assert "--by 'op-duty' is not a person id of policy version 7" in refused(
        *checked, "--by", "op-duty"
    )
    assert "--by 'p-1002' is neither keeper nor safety_officer (roles: user)" in refused(
        *checked, "--by", "p-1002"
    )
    assert "--by 'p-1004' is suspended in policy version 7" in refused(*checked, "--by", "p-1004")
    assert "--by 'p-1005' is outside their validity dates" in refused(*checked, "--by", "p-1005")
    assert "--person 'p-9999' is not a person id" in refused(
        "approve",
        "--device",
        DEVICE,
        "--person",
        "p-9999",
        "--by",
        "p-1001",
        "--policy",
        str(policy),
    )
    assert "another person than --person" in refused(*checked, "--by", "p-1003")
    assert "'p-1003' and 'p-1006' are not a pair under pair = 'two-keepers'" in refused(
        *checked, "--by", "p-1006"
    )
    assert "give --policy FILE" in refused(*named, "--by", "p-1001")
    elsewhere = rig.tmp / "policy-other.toml"
    elsewhere.write_text(policy.read_text().replace(f'cabinet = "{DEVICE}"', 'cabinet = "cab-x"'))
    assert f"is for cabinet 'cab-x', not '{DEVICE}'" in refused(
        *named, "--by", "p-1001", "--policy", str(elsewhere)
    )
    no_remote = policy_copy(
        rig.tmp, "policy-local.toml", ("remote_second = true", "remote_second = false")
    )
    assert "remote_second = false" in refused(*named, "--by", "p-1001", "--policy", str(no_remote))
    # Nothing of the above was signed or sent.
    assert rig.wire.on(command_topic("cabinet", SITE, DEVICE, "approve")) == []

    # Sent unchecked, the cabinet refuses the pair for the same reason, in its words.
    unchecked = rig.ctl(*named, "--by", "p-1006", "--unchecked")
    assert unchecked.exit_code == 3, unchecked.output
    assert "WARNING: --unchecked" in unchecked.stderr
    assert "approve REJECTED: role_requirement" in unchecked.stdout
    approved = rig.ctl(*checked, "--by", "p-1001")
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith(f"{DEVICE}: approve applied [command.applied seq ")
    grant = rig.wait_event(lambda e: e["type"] == "access.granted", "the remote grant")
    assert grant["data"]["mode"] == "remote"
    assert grant["data"]["persons"] == ["p-1003", "p-1001"]


SAFETY_ONLY = """
[[person]]
id = "p-1006"
name = "Sun Li"
roles = ["safety_officer"]
cards = ["04C0FFEE000006"]
"""
