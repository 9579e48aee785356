"""The cabinet remembers (docs/rules.md): a restart at any instant changes nothing it knows."""

from __future__ import annotations

from rules import inputs as i
from tests.rules.harness import (
    KEEPER,
    START_MS,
    USER,
    Cabinet,
    NaCN_GROSS,
    NaCN_SLOT,
    example_policy,
)

STRANGER = "04000000BAD1"


def settled_cabinet(tmp_path, **policy: dict) -> Cabinet:
    return (
        Cabinet(tmp_path, example_policy(**policy), scales_report=True)
        .weight(NaCN_SLOT, NaCN_GROSS)
        .at(6)
    )


def withdraw(cab: Cabinet, t: float, mg: int) -> Cabinet:
    cab.at(t).open_with_pair().at(t + 1).door("open").weight(NaCN_SLOT, mg)
    return cab.at(t + 5).door("closed").at(t + 15)


def books(cab: Cabinet) -> dict[int, int]:
    cab.command("snapshot")
    return {row["slot"]: row["book_mg"] for row in cab.data("inventory.snapshot")[-1]["slots"]}


def test_a_restart_after_a_withdrawal_keeps_the_books_and_raises_nothing(tmp_path):
    cab = withdraw(settled_cabinet(tmp_path), 10, NaCN_GROSS - 20_000)
    before = len(cab.events())
    cab.restart().at(40)
    after = cab.events()[before:]
    assert [e["type"] for e in after if e["type"].startswith("alarm.")] == []
    assert books(cab)[NaCN_SLOT] == 480_000


def test_system_started_says_where_the_record_resumes(tmp_path):
    cab = settled_cabinet(tmp_path)
    last = cab.events()[-1]["seq"]
    cab.restart()
    started = cab.data("system.started")
    assert started[0]["resumed_from_seq"] == 0
    assert started[1] == {"version": "test", "boot": 2, "resumed_from_seq": last}


def test_the_relay_is_off_after_a_restart_and_an_unopened_session_ends(tmp_path):
    cab = settled_cabinet(tmp_path).at(10).open_with_pair()
    assert cab.relay
    cab.restart()
    assert not cab.relay
    assert cab.data("lock.locked")[-1] == {"session": "S1-1", "reason": "restart"}
    cab.at(12).door("open")  # nobody released the bolt: opening it now is forcing it
    assert cab.alarms_raised() == ["door_forced"]


def test_a_session_whose_door_is_open_goes_on_and_is_booked_to_its_persons(tmp_path):
    cab = settled_cabinet(tmp_path).at(10).open_with_pair().at(11).door("open")
    cab.weight(NaCN_SLOT, NaCN_GROSS - 30_000).restart().at(14).door("closed").at(30)
    withdrawal = cab.data("inventory.withdrawal")
    assert [(w["session"], w["persons"], w["amount_mg"]) for w in withdrawal] == [
        ("S1-1", ["p-1001", "p-1002"], 30_000)
    ]
    assert "door_forced" not in cab.alarms_raised()


def test_an_alarm_raised_before_a_restart_is_acknowledged_after_it(tmp_path):
    cab = settled_cabinet(tmp_path).weight(NaCN_SLOT, NaCN_GROSS - 10_000).at(20)
    alarm = cab.data("alarm.raised")[0]["alarm"]
    assert alarm == "A1-1"
    cab.restart().at(30).command("ack", alarm=alarm, by="p-1001", comment="checking")
    assert cab.data("alarm.acknowledged") == [
        {"alarm": "A1-1", "kind": "mass_unexplained", "by": "p-1001", "comment": "checking"}
    ]
    assert cab.alarms_raised() == ["mass_unexplained"]  # kept under its id, not raised again
    assert cab.data("alarm.cleared") == []  # an ack never closes a discrepancy
    assert not cab.output("buzzer") and cab.output("led_red")


def test_an_alarm_whose_condition_is_gone_at_start_is_cleared_as_such(tmp_path):
    cab = settled_cabinet(tmp_path).feed(i.LeakChanged(True))
    cab.weight(NaCN_SLOT, NaCN_GROSS - 10_000).at(20)
    assert sorted(cab.alarms_raised()) == ["leak", "mass_unexplained"]
    cab.scales[NaCN_SLOT] = NaCN_GROSS  # the bottle was put back while the power was off
    cab.restart().feed(i.LeakChanged(False)).at(40)
    cleared = {d["kind"]: d["reason"] for d in cab.data("alarm.cleared")}
    assert cleared == {
        "leak": "condition_gone_at_start",
        "mass_unexplained": "condition_gone_at_start",
    }


def test_a_condition_that_still_holds_at_start_keeps_its_alarm_and_id(tmp_path):
    cab = settled_cabinet(tmp_path).door("open").at(20)
    cab.restart().door("open").at(200)
    raised = cab.data("alarm.raised")
    assert [r["kind"] for r in raised] == ["door_forced", "door_held_open"]
    cab.door("closed")
    assert [d["reason"] for d in cab.data("alarm.cleared")] == ["condition_gone"] * 2


def test_a_lockout_and_the_counted_denials_survive_a_restart(tmp_path):
    cab = settled_cabinet(tmp_path, access={"lockout_after": 3, "lockout_s": 300})
    cab.badge("A", STRANGER).badge("A", STRANGER)
    cab.restart().badge("A", STRANGER)  # the third within the window: locked out
    assert cab.alarms_raised() == ["brute_force"]
    cab.restart().at(60).badge("A", KEEPER)
    assert cab.denials()[-1] == "locked_out"
    cab.at(320)
    assert cab.data("alarm.cleared")[-1]["kind"] == "brute_force"


def test_an_unused_withdrawal_approval_survives_a_restart(tmp_path):
    cab = settled_cabinet(tmp_path)
    cab.command(
        "approve_withdrawal",
        container="c-NaCN-01",
        max_mg=5_000,
        persons=["p-1001", "p-1002"],
        until_ms=START_MS + 3_600_000,
        by="p-1003",
        purpose="titration standard",
    )
    withdraw(cab.restart(), 20, NaCN_GROSS - 25_000)
    assert cab.data("inventory.withdrawal")[0]["approval"]["max_mg"] == 5_000
    assert cab.alarms_raised() == ["mass_mismatch"]


def test_a_restart_keeps_the_policy_and_an_equal_or_older_file_never_rolls_it_back(tmp_path):
    cab = settled_cabinet(tmp_path)
    newer = example_policy(access={"pair": "two-keepers"}).model_copy(update={"version": 9})
    cab.feed(i.PolicyLoaded(newer, None, "command")).restart()
    assert cab.rules.policy is not None and cab.rules.policy.version == 9
    cab.feed(i.PolicyLoaded(newer, None, "startup"))  # its persisted copy: nothing to say
    assert cab.data("policy.rejected") == []
    cab.feed(i.PolicyLoaded(example_policy(), None, "file"))
    assert cab.data("policy.rejected")[-1]["reason"] == "version_not_newer"
    assert cab.rules.policy.version == 9
    cab.open_with_pair(KEEPER, USER)
    assert cab.denials()[-1] == "role_requirement"


def test_a_session_does_not_absorb_a_discrepancy_from_before_it(tmp_path):
    cab = settled_cabinet(tmp_path).weight(NaCN_SLOT, NaCN_GROSS - 10_000).at(20)
    assert cab.alarms_raised() == ["mass_unexplained"]
    cab.at(30).open_with_pair().at(31).door("open").at(35).door("closed").at(50)
    assert cab.data("inventory.withdrawal") == []
    assert cab.data("alarm.cleared") == []


def test_a_session_books_what_it_took_beside_an_open_discrepancy_which_stays_open(tmp_path):
    cab = settled_cabinet(tmp_path).weight(NaCN_SLOT, NaCN_GROSS - 10_000).at(20)
    cab.at(30).open_with_pair().at(31).door("open").weight(NaCN_SLOT, NaCN_GROSS - 30_000)
    cab.at(35).door("closed").at(50)
    (withdrawal,) = cab.data("inventory.withdrawal")
    assert withdrawal["persons"] == ["p-1001", "p-1002"]
    assert (withdrawal["amount_mg"], withdrawal["book_mg"]) == (20_000, 480_000)
    assert cab.data("alarm.cleared") == []  # still 10 g short of the books
    assert books(cab)[NaCN_SLOT] == 480_000


def test_the_door_open_weight_of_a_discrepant_slot_survives_a_restart(tmp_path):
    cab = settled_cabinet(tmp_path).weight(NaCN_SLOT, NaCN_GROSS - 10_000).at(20)
    cab.at(30).open_with_pair().at(31).door("open").weight(NaCN_SLOT, NaCN_GROSS - 30_000)
    cab.at(33).restart().at(35).door("closed").at(50)
    (withdrawal,) = cab.data("inventory.withdrawal")
    assert (withdrawal["amount_mg"], withdrawal["book_mg"]) == (20_000, 480_000)
    assert cab.data("alarm.cleared") == []


def test_grams_put_back_beside_a_discrepancy_are_a_return_and_it_stays_to_resolve(tmp_path):
    cab = settled_cabinet(tmp_path).weight(NaCN_SLOT, NaCN_GROSS - 10_000).at(20)
    cab.at(30).open_with_pair().at(31).door("open").weight(NaCN_SLOT, NaCN_GROSS)
    cab.at(35).door("closed").at(50)
    assert [r["amount_mg"] for r in cab.data("inventory.return")] == [10_000]
    assert books(cab)[NaCN_SLOT] == 510_000  # booked as a return: still off the books
    assert cab.data("alarm.cleared") == []


def test_a_change_after_the_grant_with_the_door_still_shut_is_unexplained(tmp_path):
    cab = settled_cabinet(tmp_path).at(10).open_with_pair()
    cab.weight(NaCN_SLOT, NaCN_GROSS - 10_000).at(18)
    assert cab.alarms_raised() == ["mass_unexplained"]
    cab.door("open").at(22).door("closed").at(40)
    assert cab.data("inventory.withdrawal") == []


def test_a_policy_update_with_another_opening_mass_does_not_move_the_books(tmp_path):
    cab = withdraw(settled_cabinet(tmp_path), 10, NaCN_GROSS - 20_000)
    doc = example_policy().model_dump(by_alias=True)
    for box in doc["container"]:
        box["mass_mg"] += 7_000
    doc["version"] = 11
    from config.policy import Policy

    cab.feed(i.PolicyLoaded(Policy.model_validate(doc), None, "command")).restart().at(60)
    assert books(cab)[NaCN_SLOT] == 480_000
    assert cab.alarms_raised() == []


def test_a_container_dropped_from_the_policy_and_named_again_keeps_its_last_book(tmp_path):
    from config.policy import Policy

    cab = withdraw(settled_cabinet(tmp_path), 10, NaCN_GROSS - 20_000)
    doc = example_policy().model_dump(by_alias=True)
    named = doc["container"]
    doc["container"] = [box for box in named if box["id"] != "c-NaCN-01"]
    doc["version"] = 11
    cab.feed(i.PolicyLoaded(Policy.model_validate(doc), None, "command")).at(40)
    assert NaCN_SLOT not in {n for n, book in books(cab).items() if book}
    cab.restart().at(60)  # the dropped container's book is state, like any other
    doc["container"], doc["version"] = named, 12
    cab.feed(i.PolicyLoaded(Policy.model_validate(doc), None, "command")).at(80)
    assert books(cab)[NaCN_SLOT] == 480_000  # not the policy's mass_mg (500 g) again
    assert "mass_unexplained" not in cab.alarms_raised()


def test_a_reader_fault_from_before_a_restart_clears_when_that_reader_reads_a_card(tmp_path):
    cab = settled_cabinet(tmp_path).feed(i.ReaderFault("A", "unplugged"))
    cab.restart().at(30)
    assert cab.data("alarm.cleared") == []  # nothing said the reader is back
    cab.badge("A", KEEPER)
    assert cab.data("alarm.cleared") == [
        {"alarm": "A1-1", "kind": "reader_fault", "reader": "A", "reason": "condition_gone"}
    ]
