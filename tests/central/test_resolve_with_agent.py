"""cabinetctl resolve, stocktake and the approvals against the real agent over a real
mosquitto (双人记账): refused before signing when the cabinet's policy says no, refused by
the cabinet with its reason when sent unchecked, and applied when two keepers sign — the
book follows the count and the alarm clears."""

from __future__ import annotations

from agent.wire import command_topic
from tests.central.agent_rig import DATA, DEVICE, POLICY, SITE, Rig


def refused_here(rig: Rig, *args: str) -> str:
    """What cabinetctl said when it refused to sign (exit 1, nothing sent)."""
    result = rig.ctl(*args)
    assert result.exit_code == 1, result.output
    return result.stderr


def test_cabinetctl_resolve_round_trips_with_refusals_and_their_reasons(rig: Rig) -> None:
    config = rig.cabinet()
    rig.start_agent(config, scenario=DATA / "loss_with_the_door_shut.jsonl")
    rig.wait_online(boot=1)
    raised = rig.wait_event(
        lambda e: e["type"] == "alarm.raised" and e["data"]["kind"] == "mass_unexplained",
        "the loss noticed",
    )
    alarm = raised["data"]["alarm"]
    base = ("resolve", alarm, "--device", DEVICE, "--reason", "spill")
    checked = (*base, "--policy", str(POLICY))

    said = refused_here(rig, *checked, "--person", "p-1001", "--person", "p-1002")
    assert "--person 'p-1002' is neither keeper nor safety_officer (roles: user)" in said
    said = refused_here(rig, *checked, "--person", "p-1001", "--person", "p-1004")
    assert "--person 'p-1004' is suspended in policy version 7" in said
    said = refused_here(rig, *base, "--person", "p-1001", "--person", "p-1001")
    assert "two different persons" in said
    said = refused_here(rig, *checked, "--person", "p-1001", "--person", "p-1003", "--comment", "")
    assert "--comment is empty" in said
    long = "x" * 501
    said = refused_here(
        rig, *checked, "--person", "p-1001", "--person", "p-1003", "--comment", long
    )
    assert "--comment is 501 characters; at most 500" in said
    two_lines = "wiped up\nby the door"
    said = refused_here(
        rig, *checked, "--person", "p-1001", "--person", "p-1003", "--comment", two_lines
    )
    assert "--comment holds a control character (U+000A" in said and "character 9" in said
    said = refused_here(rig, *base, "--person", "p-1001", "--person", "p-1003")
    assert "give --policy FILE" in said
    assert rig.wire.on(command_topic("cabinet", SITE, DEVICE, "resolve")) == []

    by_a_user = rig.ctl(*base, "--person", "p-1001", "--person", "p-1002", "--unchecked")
    assert by_a_user.exit_code == 3, by_a_user.output
    assert "resolve REJECTED: role_requirement" in by_a_user.stdout

    done = rig.ctl(*checked, "--person", "p-1001", "--person", "p-1003", "--comment", "wiped up")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"{DEVICE}: resolve applied [command.applied seq ")
    adjusted = rig.wait_event(lambda e: e["type"] == "inventory.adjusted", "the books adjusted")
    assert (adjusted["data"]["book_after_mg"], adjusted["data"]["delta_mg"]) == (488_000, -12_000)
    cleared = rig.wait_event(lambda e: e["type"] == "alarm.cleared", "the alarm resolved")
    assert (cleared["data"]["alarm"], cleared["data"]["reason"]) == (alarm, "resolved")

    stock = ("stocktake", "--device", DEVICE, "--policy", str(POLICY))
    taken = rig.ctl(*stock, "--person", "p-1003", "--person", "p-1001")
    assert taken.exit_code == 0, taken.output
    take = rig.wait_event(lambda e: e["type"] == "inventory.stocktake", "the stocktake")
    assert take["data"]["all_ok"] is True and take["data"]["persons"] == ["p-1003", "p-1001"]
    said = refused_here(rig, *stock, "--person", "p-1002", "--person", "p-1001")
    assert "--person 'p-1002' is neither keeper nor safety_officer" in said
    refused = rig.ctl(
        "stocktake", "--device", DEVICE, "--person", "p-1002", "--person", "p-1001", "--unchecked"
    )
    assert refused.exit_code == 3 and "stocktake REJECTED: role_requirement" in refused.stdout
    rig.assert_whole_chain()


def test_cabinetctl_approvals_name_a_valid_approver_and_a_purpose(rig: Rig) -> None:
    config = rig.cabinet()
    rig.start_agent(config)
    rig.wait_online(boot=1)
    disposal = ("approve-disposal", "--device", DEVICE, "--policy", str(POLICY))
    box = ("--container", "c-KMnO4-01")
    people = ("--person", "p-1001", "--person", "p-1002", "--purpose", "expired")

    said = refused_here(rig, *disposal, *box, *people, "--by", "p-1002")
    assert "--by 'p-1002' is neither keeper nor safety_officer" in said
    said = refused_here(rig, *disposal, *box, *people, "--by", "Wang Fang")
    assert "did you mean p-1003 (Wang Fang)?" in said
    said = refused_here(rig, *disposal, "--container", "c-KMnO4-99", *people, "--by", "p-1003")
    assert "--container 'c-KMnO4-99' is not in policy version 7" in said
    expired = ("--person", "p-1001", "--person", "p-1005", "--purpose", "expired")
    said = refused_here(rig, *disposal, *box, *expired, "--by", "p-1003")
    assert "--person 'p-1005' is outside their validity dates" in said
    assert "until 2025-12-31T00:00:00+00:00" in said
    tabbed = ("--person", "p-1001", "--person", "p-1002", "--purpose", "expired\tlot 7")
    said = refused_here(rig, *disposal, *box, *tabbed, "--by", "p-1003")
    assert "--purpose holds a control character (U+0009" in said
    withdrawal = ("approve-withdrawal", "--device", DEVICE, "--policy", str(POLICY))
    said = refused_here(
        rig, *withdrawal, "--container", "c-NaCN-01", "--max-grams", "5", *people, "--by", "p-1004"
    )
    assert "--by 'p-1004' is suspended" in said
    assert rig.wire.on(command_topic("cabinet", SITE, DEVICE, "approve_disposal")) == []

    approved = rig.ctl(*disposal, *box, *people, "--by", "p-1003")
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith(f"{DEVICE}: approve_disposal applied [command.applied")
    applied = rig.wait_event(
        lambda e: e["type"] == "command.applied" and e["data"]["name"] == "approve_disposal",
        "the approved disposal",
    )
    assert (applied["data"]["by"], applied["data"]["purpose"]) == ("p-1003", "expired")
    rig.assert_whole_chain()


def test_resolving_an_alarm_that_is_no_discrepancy_is_refused_by_the_cabinet(rig: Rig) -> None:
    config = rig.cabinet()
    rig.start_agent(config, scenario=DATA / "leak_and_keeper_waiting.jsonl")
    rig.wait_online(boot=1)
    leak = rig.wait_event(
        lambda e: e["type"] == "alarm.raised" and e["data"]["kind"] == "leak", "the leak alarm"
    )
    alarm = leak["data"]["alarm"]
    result = rig.ctl(
        "resolve",
        alarm,
        "--device",
        DEVICE,
        "--reason",
        "recount",
        "--person",
        "p-1001",
        "--person",
        "p-1003",
        "--policy",
        str(POLICY),
    )
    assert result.exit_code == 3, result.output
    rejected = rig.wait_event(
        lambda e: e["type"] == "command.rejected" and e["data"]["name"] == "resolve",
        "the refusal",
    )
    assert rejected["data"]["reason"] == "not_resolvable"
    assert result.stdout == (
        f"{DEVICE}: resolve REJECTED: not_resolvable [command.rejected seq {rejected['seq']}]\n"
    )
    # Only a mass alarm has a book to set: the leak stays open.
    assert not [e for e in rig.events() if e["type"] == "alarm.cleared"]
