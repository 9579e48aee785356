"""Discrepancies are resolved by two named persons, not acknowledged away (双人记账)."""

from __future__ import annotations

import pytest

from tests.rules.harness import Cabinet, NaCN_GROSS, NaCN_SLOT, example_policy

KEEPERS = ["p-1001", "p-1003"]


def with_a_loss(tmp_path) -> tuple[Cabinet, str]:
    cab = Cabinet(tmp_path, example_policy(), scales_report=True).weight(NaCN_SLOT, NaCN_GROSS)
    cab.at(6).weight(NaCN_SLOT, NaCN_GROSS - 12_000).at(20)
    return cab, cab.data("alarm.raised")[0]["alarm"]


def test_two_keepers_resolve_a_loss_the_book_follows_the_count_and_the_alarm_clears(tmp_path):
    cab, alarm = with_a_loss(tmp_path)
    cab.command("resolve", alarm=alarm, reason="spill", persons=KEEPERS, comment="wiped up")
    assert cab.data("inventory.adjusted") == [
        {
            "container": "c-NaCN-01",
            "slot": NaCN_SLOT,
            "book_before_mg": 500_000,
            "book_after_mg": 488_000,
            "delta_mg": -12_000,
            "reason": "spill",
            "persons": KEEPERS,
            "alarm": alarm,
            "comment": "wiped up",
        }
    ]
    assert cab.data("alarm.cleared") == [
        {"alarm": alarm, "kind": "mass_unexplained", "reason": "resolved"}
    ]
    assert not cab.output("led_red")
    cab.at(60)
    assert cab.alarms_raised() == ["mass_unexplained"]  # the new book matches the stock


def test_a_resolve_survives_a_restart_and_an_alarm_from_an_earlier_boot_can_be_resolved(
    tmp_path,
):
    cab, alarm = with_a_loss(tmp_path)
    cab.restart().at(40)
    cab.command("resolve", alarm=alarm, reason="recount", persons=KEEPERS)
    cab.restart().at(80)
    cab.command("snapshot")
    assert cab.data("inventory.snapshot")[-1]["slots"][0]["book_mg"] == 488_000
    assert cab.alarms_raised() == ["mass_unexplained"]


@pytest.mark.parametrize(
    ("persons", "reason"),
    [
        (["p-1001", "p-1001"], "same_person"),  # one person twice
        (["p-1001", "p-1002"], "role_requirement"),  # a user
        (["p-1001", "p-9999"], "unknown_person"),
        (["p-1001", "p-1004"], "not_authorized"),  # suspended
    ],
)
def test_a_resolve_needs_two_distinct_valid_keepers_or_safety_officers(tmp_path, persons, reason):
    cab, alarm = with_a_loss(tmp_path)
    cab.command("resolve", alarm=alarm, reason="recount", persons=persons)
    assert cab.data("command.rejected")[0]["reason"] == reason
    assert cab.data("inventory.adjusted") == [] and cab.data("alarm.cleared") == []


def test_other_without_a_comment_is_bad_args(tmp_path):
    cab, alarm = with_a_loss(tmp_path)
    cab.command("resolve", alarm=alarm, reason="other", persons=KEEPERS)
    assert cab.data("command.rejected")[0]["reason"] == "bad_args"


def test_a_resolve_before_the_weight_settles_is_refused(tmp_path):
    cab, alarm = with_a_loss(tmp_path)
    cab.weight(NaCN_SLOT, NaCN_GROSS - 30_000)  # someone is still handling the bottle
    cab.command("resolve", alarm=alarm, reason="recount", persons=KEEPERS)
    assert cab.data("command.rejected")[0]["reason"] == "not_settled"


def test_only_mass_alarms_can_be_resolved(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).door("closed").door("open")
    alarm = cab.data("alarm.raised")[0]["alarm"]
    cab.command("resolve", alarm=alarm, reason="recount", persons=KEEPERS)
    assert cab.data("command.rejected")[0]["reason"] == "not_resolvable"


def test_an_unknown_item_resolved_moves_no_book(tmp_path):
    cab = Cabinet(tmp_path, example_policy(), scales_report=True).weight(9, 50_000).at(10)
    alarm = cab.data("alarm.raised")[0]["alarm"]
    cab.command("resolve", alarm=alarm, reason="recount", persons=KEEPERS)
    adjusted = cab.data("inventory.adjusted")[0]
    assert (adjusted["container"], adjusted["delta_mg"]) == (None, 0)
    assert cab.data("alarm.cleared")[0]["reason"] == "resolved"


def test_a_bottle_missing_from_its_slot_cannot_be_counted_so_it_is_not_resolvable(tmp_path):
    cab = Cabinet(tmp_path, example_policy(), scales_report=True).weight(NaCN_SLOT, NaCN_GROSS)
    cab.at(6).weight(NaCN_SLOT, 0).at(20)
    alarm = cab.data("alarm.raised")[0]["alarm"]
    cab.command("resolve", alarm=alarm, reason="theft_reported", persons=KEEPERS)
    assert cab.data("command.rejected")[0]["reason"] == "not_resolvable"


def test_a_stocktake_by_two_keepers_attests_every_slot_all_ok(tmp_path):
    cab = Cabinet(tmp_path, example_policy(), scales_report=True).weight(NaCN_SLOT, NaCN_GROSS)
    cab.weight(4, 400_000).at(10).command("stocktake", persons=KEEPERS)
    take = cab.data("inventory.stocktake")[0]
    assert take["persons"] == KEEPERS and take["all_ok"] is True
    assert take["slots"][0] == {
        "slot": NaCN_SLOT,
        "container": "c-NaCN-01",
        "measured_mg": 500_000,
        "book_mg": 500_000,
        "diff_mg": 0,
        "ok": True,
    }
    assert cab.types()[-2:] == ["command.applied", "inventory.stocktake"]


def test_a_stocktake_finds_a_hidden_loss_and_raises_the_alarm_nobody_had(tmp_path):
    policy = example_policy(inventory={"settle_s": 0})  # the loss settles at once, unchecked
    cab = Cabinet(tmp_path, policy).weight(NaCN_SLOT, NaCN_GROSS).weight(4, 400_000)
    cab.rules.ledger.slots[NaCN_SLOT].settled = NaCN_GROSS - 9_000  # a drift nobody judged
    cab.rules.ledger.slots[NaCN_SLOT].candidate = NaCN_GROSS - 9_000
    cab.command("stocktake", persons=KEEPERS)
    take = cab.data("inventory.stocktake")[0]
    assert take["all_ok"] is False and take["slots"][0]["diff_mg"] == -9_000
    assert cab.alarms_raised() == ["mass_unexplained"]


def test_a_stocktake_needs_two_keepers_or_safety_officers(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).command("stocktake", persons=["p-1001", "p-1002"])
    assert cab.data("command.rejected")[0]["reason"] == "role_requirement"
    assert cab.data("inventory.stocktake") == []
