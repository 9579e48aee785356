"""账物相符: the books must match the stock; every gram is attributed or alarmed."""

from __future__ import annotations

from tests.rules.harness import Cabinet, NaCN_GROSS, NaCN_SLOT, example_policy


def session(cab: Cabinet, t: float = 0) -> Cabinet:
    return cab.at(t).open_with_pair().at(t + 1).door("open")


def settled(tmp_path) -> Cabinet:
    return (
        Cabinet(tmp_path, example_policy(), scales_report=True).weight(NaCN_SLOT, NaCN_GROSS).at(6)
    )


def approve(cab: Cabinet, max_mg: int, persons: list[str], **more: str) -> Cabinet:
    """An approve_withdrawal of the sodium cyanide, valid long enough for any test."""
    args = {"container": "c-NaCN-01", "max_mg": max_mg, "until_ms": 2_000_000_000_000}
    signed = {"by": "p-1003", "purpose": "titration standard", **more}
    return cab.command("approve_withdrawal", persons=persons, **args, **signed)


def test_a_withdrawal_in_a_session_is_attributed_to_both_persons_and_the_books_move(tmp_path):
    cab = Cabinet(tmp_path, example_policy(), scales_report=True)
    cab.weight(NaCN_SLOT, NaCN_GROSS).at(6)
    session(cab, 10).at(13).weight(NaCN_SLOT, NaCN_GROSS - 25_000).at(20).door("closed").at(30)
    assert cab.data("inventory.withdrawal") == [
        {
            "session": "S1-1",
            "persons": ["p-1001", "p-1002"],
            "slot": 3,
            "container": "c-NaCN-01",
            "cas": "143-33-9",
            "amount_mg": 25_000,
            "book_mg": 475_000,
            "approval": None,
            "purpose": None,
        }
    ]
    assert cab.alarms_raised() == []


def test_a_return_of_content_increases_the_books(tmp_path):
    cab = (
        Cabinet(tmp_path, example_policy(), scales_report=True).weight(NaCN_SLOT, NaCN_GROSS).at(6)
    )
    session(cab, 10).weight(NaCN_SLOT, NaCN_GROSS + 10_000).at(20).door("closed").at(30)
    assert cab.data("inventory.return")[0]["amount_mg"] == 10_000
    assert cab.data("inventory.return")[0]["book_mg"] == 510_000


def test_changes_within_tolerance_are_not_a_withdrawal(tmp_path):
    # tolerance = max(2000 mg, 1% of 500 g = 5000 mg)
    cab = (
        Cabinet(tmp_path, example_policy(), scales_report=True).weight(NaCN_SLOT, NaCN_GROSS).at(6)
    )
    session(cab, 10).weight(NaCN_SLOT, NaCN_GROSS - 4_000).at(20).door("closed").at(30)
    assert cab.data("inventory.withdrawal") == []


def test_a_container_taken_away_and_brought_back_in_a_later_session(tmp_path):
    cab = (
        Cabinet(tmp_path, example_policy(), scales_report=True).weight(NaCN_SLOT, NaCN_GROSS).at(6)
    )
    session(cab, 10).weight(NaCN_SLOT, 0).at(20).door("closed").at(30)
    assert cab.data("inventory.removed") == [
        {"session": "S1-1", "persons": ["p-1001", "p-1002"], "slot": 3, "container": "c-NaCN-01"}
    ]
    session(cab, 100).weight(NaCN_SLOT, NaCN_GROSS - 30_000).at(110).door("closed").at(120)
    assert cab.data("inventory.restored")[0]["session"] == "S1-2"
    assert cab.data("inventory.withdrawal")[0]["amount_mg"] == 30_000
    assert cab.alarms_raised() == []


def test_a_container_not_back_within_the_return_time_is_overdue(tmp_path):
    policy = example_policy(inventory={"return_within_s": 600})
    cab = Cabinet(tmp_path, policy, scales_report=True).weight(NaCN_SLOT, NaCN_GROSS).at(6)
    session(cab, 10).weight(NaCN_SLOT, 0).at(20).door("closed").at(600)
    assert cab.alarms_raised() == []
    cab.at(626)
    assert cab.alarms_raised() == ["overdue_return"]
    session(cab, 700).weight(NaCN_SLOT, NaCN_GROSS).at(710).door("closed").at(720)
    assert cab.alarms_cleared() == ["overdue_return"]


def test_a_weight_change_with_the_door_shut_and_no_session_is_unexplained(tmp_path):
    cab = (
        Cabinet(tmp_path, example_policy(), scales_report=True).weight(NaCN_SLOT, NaCN_GROSS).at(6)
    )
    cab.weight(NaCN_SLOT, NaCN_GROSS - 50_000).at(10)
    assert cab.alarms_raised() == []  # not settled yet
    cab.at(12)
    raised = cab.data("alarm.raised")
    assert raised[0]["kind"] == "mass_unexplained"
    assert (
        raised[0]["expected_mg"] == NaCN_GROSS and raised[0]["measured_mg"] == NaCN_GROSS - 50_000
    )
    cab.weight(NaCN_SLOT, NaCN_GROSS).at(20)
    assert cab.alarms_cleared() == ["mass_unexplained"]


def test_stock_that_does_not_match_the_books_at_start_is_unexplained(tmp_path):
    cab = (
        Cabinet(tmp_path, example_policy(), scales_report=True)
        .weight(NaCN_SLOT, NaCN_GROSS - 100_000)
        .at(6)
    )
    assert cab.alarms_raised() == ["mass_unexplained"]


def test_weight_on_a_slot_with_no_container_is_an_unknown_item(tmp_path):
    cab = Cabinet(tmp_path, example_policy(), scales_report=True).weight(9, 120_000).at(6)
    assert cab.alarms_raised() == ["unknown_item"]
    cab.weight(9, 0).at(12)
    assert cab.alarms_cleared() == ["unknown_item"]


def test_a_withdrawal_above_the_approved_amount_is_a_mismatch(tmp_path):
    cab = approve(settled(tmp_path), 10_000, ["p-1001", "p-1002"])
    session(cab, 10).weight(NaCN_SLOT, NaCN_GROSS - 40_000).at(20).door("closed").at(30)
    withdrawal = cab.data("inventory.withdrawal")[0]
    assert withdrawal["approval"]["max_mg"] == 10_000
    mismatch = cab.data("alarm.raised")[0]
    assert (mismatch["kind"], mismatch["amount_mg"], mismatch["approved_mg"]) == (
        "mass_mismatch",
        40_000,
        10_000,
    )


def test_a_withdrawal_within_the_approved_amount_and_tolerance_is_fine(tmp_path):
    cab = approve(settled(tmp_path), 10_000, ["p-1001", "p-1002"])
    session(cab, 10).weight(NaCN_SLOT, NaCN_GROSS - 14_000).at(20).door("closed").at(30)
    assert cab.data("inventory.withdrawal")[0]["amount_mg"] == 14_000
    assert cab.alarms_raised() == []


def test_without_an_approval_on_record_a_withdrawal_is_recorded_not_alarmed(tmp_path):
    cab = (
        Cabinet(tmp_path, example_policy(), scales_report=True).weight(NaCN_SLOT, NaCN_GROSS).at(6)
    )
    session(cab, 10).weight(NaCN_SLOT, NaCN_GROSS - 200_000).at(20).door("closed").at(30)
    assert cab.data("inventory.withdrawal")[0]["amount_mg"] == 200_000
    assert cab.alarms_raised() == []


def test_an_ack_silences_a_mismatch_but_never_closes_it(tmp_path):
    cab = approve(settled(tmp_path), 1_000, ["p-1001"])
    session(cab, 10).weight(NaCN_SLOT, NaCN_GROSS - 40_000).at(20).door("closed").at(30)
    alarm = cab.data("alarm.raised")[0]["alarm"]
    cab.command("ack", alarm=alarm, by="p-1003", comment="seen")
    assert cab.data("alarm.acknowledged") == [
        {"alarm": alarm, "kind": "mass_mismatch", "by": "p-1003", "comment": "seen"}
    ]
    assert cab.data("alarm.cleared") == []
    assert not cab.output("buzzer") and cab.output("led_red")


def test_the_snapshot_command_reports_scale_and_books_per_slot(tmp_path):
    cab = (
        Cabinet(tmp_path, example_policy(), scales_report=True).weight(NaCN_SLOT, NaCN_GROSS).at(6)
    )
    cab.command("snapshot")
    slots = {row["slot"]: row for row in cab.data("inventory.snapshot")[0]["slots"]}
    assert slots[3]["mass_mg"] == 500_000 and slots[3]["book_mg"] == 500_000
    assert slots[3]["container"] == "c-NaCN-01"
    assert cab.data("command.applied")[0]["name"] == "snapshot"


def test_the_withdrawal_that_uses_an_approval_records_who_approved_it_and_what_for(tmp_path):
    cab = approve(
        settled(tmp_path),
        30_000,
        ["p-1001", "p-1002"],
        by="p-1003",
        purpose="cyanide leach assay, batch 7",
    )
    session(cab, 10).weight(NaCN_SLOT, NaCN_GROSS - 25_000).at(20).door("closed").at(30)
    withdrawal = cab.data("inventory.withdrawal")[0]
    assert withdrawal["approval"]["by"] == "p-1003"
    assert withdrawal["purpose"] == "cyanide leach assay, batch 7"


def test_an_approval_by_a_user_or_for_an_unknown_person_is_refused(tmp_path):
    cab = Cabinet(tmp_path, example_policy())
    args = {
        "container": "c-NaCN-01",
        "max_mg": 1_000,
        "until_ms": 2_000_000_000_000,
        "purpose": "assay",
    }
    cab.command("approve_withdrawal", persons=["p-1001"], by="p-1002", **args)
    cab.command("approve_withdrawal", persons=["p-9999"], by="p-1003", **args)
    cab.command("approve_withdrawal", persons=["p-1004"], by="p-1003", **args)
    reasons = [d["reason"] for d in cab.data("command.rejected")]
    assert reasons == ["role_requirement", "unknown_person", "not_authorized"]


def test_an_approval_refused_for_a_missing_purpose_records_who_asked_for_whom(tmp_path):
    cab = Cabinet(tmp_path, example_policy())
    args = {"container": "c-NaCN-01", "max_mg": 1_000, "until_ms": 2_000_000_000_000}
    cab.command("approve_withdrawal", persons=["p-1002", "p-1001"], by="p-1003", **args)
    (refused,) = cab.data("command.rejected")
    assert refused["reason"] == "bad_args"
    assert (refused["by"], refused["persons"]) == ("p-1003", ["p-1001", "p-1002"])
    assert refused["container"] == "c-NaCN-01"


def test_a_scale_below_the_empty_bottle_books_at_most_the_content_and_raises_the_rest(tmp_path):
    cab = session(settled(tmp_path), 10).weight(NaCN_SLOT, 100_000)  # tare is 182 g
    cab.at(20).door("closed").at(30)
    (withdrawal,) = cab.data("inventory.withdrawal")
    assert (withdrawal["amount_mg"], withdrawal["book_mg"]) == (500_000, 0)
    assert cab.alarms_raised() == ["mass_unexplained"]
    assert cab.data("alarm.raised")[0]["measured_mg"] == 100_000


def test_an_emptied_bottle_reading_a_little_under_its_tare_is_noise_not_a_loss(tmp_path):
    cab = session(settled(tmp_path), 10).weight(NaCN_SLOT, 182_000 - 1_000)
    cab.at(20).door("closed").at(30)
    (withdrawal,) = cab.data("inventory.withdrawal")
    assert (withdrawal["amount_mg"], withdrawal["book_mg"]) == (500_000, 0)
    assert cab.alarms_raised() == []
