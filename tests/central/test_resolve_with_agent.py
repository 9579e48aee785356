"""cabinetctl resolve and stocktake against the real agent over a real mosquitto (双人记账): refused
before sending when the policy says no, refused by the cabinet with its reason, and
applied when two keepers sign — the book follows the count and the alarm clears."""

from __future__ import annotations

from tests.central.agent_rig import DATA, DEVICE, POLICY, Rig


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

    checked = rig.ctl(*base, "--person", "p-1001", "--person", "p-1002", "--policy", str(POLICY))
    assert checked.exit_code != 0 and "'p-1002' is neither keeper nor safety_officer" in (
        checked.output
    )
    twice = rig.ctl(*base, "--person", "p-1001", "--person", "p-1001")
    assert twice.exit_code != 0 and "two different persons" in twice.output

    by_a_user = rig.ctl(*base, "--person", "p-1001", "--person", "p-1002")
    assert by_a_user.exit_code == 3, by_a_user.output
    assert "resolve REJECTED: role_requirement" in by_a_user.stdout

    done = rig.ctl(*base, "--person", "p-1001", "--person", "p-1003", "--comment", "wiped up")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"{DEVICE}: resolve applied [command.applied seq ")
    adjusted = rig.wait_event(lambda e: e["type"] == "inventory.adjusted", "the books adjusted")
    assert (adjusted["data"]["book_after_mg"], adjusted["data"]["delta_mg"]) == (488_000, -12_000)
    cleared = rig.wait_event(lambda e: e["type"] == "alarm.cleared", "the alarm resolved")
    assert (cleared["data"]["alarm"], cleared["data"]["reason"]) == (alarm, "resolved")

    taken = rig.ctl("stocktake", "--device", DEVICE, "--person", "p-1003", "--person", "p-1001")
    assert taken.exit_code == 0, taken.output
    take = rig.wait_event(lambda e: e["type"] == "inventory.stocktake", "the stocktake")
    assert take["data"]["all_ok"] is True and take["data"]["persons"] == ["p-1003", "p-1001"]
    refused = rig.ctl("stocktake", "--device", DEVICE, "--person", "p-1002", "--person", "p-1001")
    assert refused.exit_code == 3 and "stocktake REJECTED: role_requirement" in refused.stdout

    disposal = ("approve-disposal", "--device", DEVICE, "--container", "c-KMnO4-01")
    people = ("--person", "p-1001", "--person", "p-1002", "--purpose", "expired")
    by_a_user = rig.ctl(*disposal, *people, "--by", "p-1002", "--policy", str(POLICY))
    assert by_a_user.exit_code != 0 and "neither keeper nor safety_officer" in by_a_user.output
    approved = rig.ctl(*disposal, *people, "--by", "p-1003")
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith(f"{DEVICE}: approve_disposal applied [command.applied")
    rig.assert_whole_chain()
