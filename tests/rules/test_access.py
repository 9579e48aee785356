"""双人双锁: two locks held by two people — access rules, in the regulation's words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from config.policy import Policy
from rules import inputs as i
from tests.rules.harness import (
    EXPIRED,
    KEEPER,
    KEEPER2,
    SUSPENDED,
    USER,
    USER_SECOND_CARD,
    Cabinet,
    example_policy,
)


def test_two_authorised_people_on_two_readers_open_the_cabinet(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).open_with_pair()
    granted = cab.data("access.granted")
    assert granted == [
        {"persons": ["p-1001", "p-1002"], "readers": ["A", "B"], "mode": "local", "session": "S1-1"}
    ]
    assert cab.types()[-2:] == ["access.granted", "lock.unlocked"]
    assert cab.relay


def test_one_person_alone_cannot_open(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).badge("A", KEEPER).at(31)
    assert cab.data("access.expired") == [{"person": "p-1001"}]
    assert not cab.data("access.granted")
    assert not cab.relay


def test_one_person_with_two_cards_cannot_open(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).badge("A", USER).badge("B", USER_SECOND_CARD)
    assert cab.denials() == ["same_person"]
    assert not cab.relay


def test_second_badge_on_the_same_reader_is_refused_when_readers_must_differ(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).badge("A", KEEPER).badge("A", USER)
    assert cab.denials() == ["same_reader"]
    assert not cab.data("access.granted")


def test_same_reader_is_fine_when_the_policy_allows_it(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"distinct_readers": False}))
    cab.badge("A", KEEPER).badge("A", USER)
    assert cab.data("access.granted")[0]["readers"] == ["A", "A"]


def test_a_denied_second_badge_leaves_the_first_pending_until_its_window_ends(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).badge("A", KEEPER).at(5).badge("B", "0499999999")
    cab.at(10).badge("B", USER)
    assert cab.denials() == ["unknown_card"]
    assert cab.data("access.granted")


def test_the_second_badge_must_come_within_the_pair_window(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).badge("A", KEEPER).at(30.001).badge("B", USER)
    assert "access.expired" in cab.types()
    assert not cab.data("access.granted")
    assert cab.data("access.pending")[-1]["person"] == "p-1002"  # a new pair starts


def test_unknown_card_is_denied_and_only_its_last_four_digits_are_recorded(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).badge("A", "04CAFEBABE1234")
    assert cab.data("access.denied") == [
        {"reason": "unknown_card", "reader": "A", "uid": "**********1234"}
    ]


def test_without_a_policy_no_one_opens(tmp_path):
    cab = Cabinet(tmp_path, None).open_with_pair()
    assert cab.denials() == ["no_policy", "no_policy"]
    assert not cab.relay


def test_a_suspended_person_is_not_authorised(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).badge("A", KEEPER).badge("B", SUSPENDED)
    assert cab.denials() == ["not_authorized"]


def test_a_person_past_their_validity_date_is_not_authorised(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).badge("A", KEEPER).badge("B", EXPIRED)
    assert cab.denials() == ["not_authorized"]


def test_a_person_before_their_valid_from_date_is_not_authorised(tmp_path):
    policy = example_policy()
    late = policy.person[1].model_copy(update={"valid_from": datetime(2027, 1, 1, tzinfo=UTC)})
    policy = policy.model_copy(update={"person": (policy.person[0], late, *policy.person[2:])})
    cab = Cabinet(tmp_path, policy).badge("A", KEEPER).badge("B", USER)
    assert cab.denials() == ["not_authorized"]


def test_a_person_not_listed_for_this_cabinet_is_not_authorised(tmp_path):
    policy = example_policy()
    other = policy.person[1].model_copy(update={"cabinets": ("cab-other-0001",)})
    policy = policy.model_copy(update={"person": (policy.person[0], other, *policy.person[2:])})
    cab = Cabinet(tmp_path, policy).badge("A", KEEPER).badge("B", USER)
    assert cab.denials() == ["not_authorized"]


def test_keeper_plus_any_needs_at_least_one_keeper(tmp_path):
    policy = example_policy()
    second_user = policy.person[1].model_copy(update={"id": "p-2000", "cards": ("04ABABABAB0001",)})
    policy = policy.model_copy(update={"person": (*policy.person, second_user)})
    cab = Cabinet(tmp_path, policy).badge("A", USER).badge("B", "04ABABABAB0001")
    assert cab.denials() == ["role_requirement"]
    cab.badge("B", KEEPER)
    assert cab.data("access.granted")[0]["persons"] == ["p-1002", "p-1001"]


def test_two_keepers_rule_refuses_a_user_and_accepts_two_keepers(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"pair": "two-keepers"}))
    cab.badge("A", KEEPER).badge("B", USER)
    assert cab.denials() == ["role_requirement"]
    cab.badge("B", KEEPER2)
    assert cab.data("access.granted")[0]["persons"] == ["p-1001", "p-1003"]


def test_any_two_rule_accepts_two_users(tmp_path):
    policy = example_policy(access={"pair": "any-two"})
    second_user = policy.person[1].model_copy(update={"id": "p-2000", "cards": ("04ABABABAB0001",)})
    policy = policy.model_copy(update={"person": (*policy.person, second_user)})
    cab = Cabinet(tmp_path, policy).badge("A", USER).badge("B", "04ABABABAB0001")
    assert cab.data("access.granted")


def test_denials_are_checked_in_order_unknown_card_before_lockout(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"lockout_after": 2}))
    cab.badge("A", "0400000001").badge("A", "0400000002")  # two denials -> locked out
    cab.badge("A", "0400000003").badge("A", SUSPENDED).badge("A", KEEPER)
    assert cab.denials() == [
        "unknown_card",
        "unknown_card",
        "unknown_card",
        "not_authorized",
        "locked_out",
    ]


def test_repeated_denials_lock_out_every_badge_and_raise_brute_force(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"lockout_after": 3, "lockout_s": 60}))
    for n in range(3):
        cab.at(n).badge("A", f"040000000{n}")
    assert cab.alarms_raised() == ["brute_force"]
    cab.at(10).badge("A", KEEPER).badge("B", USER)
    assert cab.denials()[-2:] == ["locked_out", "locked_out"]
    cab.at(63).badge("A", KEEPER).badge("B", USER)
    assert cab.alarms_cleared() == ["brute_force"]
    assert cab.data("access.granted")


def test_denials_spread_beyond_the_lockout_window_do_not_lock_out(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"lockout_after": 3, "lockout_window_s": 60}))
    for n in range(3):
        cab.at(n * 40).badge("A", f"040000000{n}")
    assert cab.alarms_raised() == []


def test_badges_while_a_session_is_open_are_denied_door_open(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).open_with_pair().door("open").badge("A", KEEPER2)
    assert cab.denials() == ["door_open"]


def test_a_signed_remote_approval_by_a_keeper_stands_in_for_the_second_person(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"remote_second": True})).badge("A", USER)
    cab.command("approve", person="p-1002", by="p-1003")
    granted = cab.data("access.granted")
    assert granted[0]["mode"] == "remote"
    assert granted[0]["persons"] == ["p-1002", "p-1003"]
    assert cab.data("command.applied")[0] | {"nonce": None} == {
        "name": "approve",
        "nonce": None,
        "reason": None,
        "person": "p-1002",
        "by": "p-1003",
    }
    assert cab.relay


@pytest.mark.parametrize(
    ("pending_card", "person", "by", "reason"),
    [
        (USER, "p-1002", "op-duty", "unknown_person"),  # a name, not a policy person
        (USER, "p-1002", "p-1002", "same_person"),
        (USER, "p-1002", "p-1004", "not_authorized"),  # suspended
        (USER, "p-1002", "p-1005", "not_authorized"),  # past valid_until
        (KEEPER, "p-1001", "p-1002", "role_requirement"),  # a user may not approve
    ],
)
def test_a_remote_approval_the_pair_rule_would_refuse_is_rejected(
    tmp_path, pending_card, person, by, reason
):
    cab = Cabinet(tmp_path, example_policy(access={"remote_second": True}))
    cab.badge("A", pending_card).command("approve", person=person, by=by)
    assert cab.data("command.rejected")[0]["reason"] == reason
    assert not cab.data("access.granted") and not cab.relay


def test_under_two_keepers_a_remote_keeper_completes_a_keeper_pair(tmp_path):
    policy = example_policy(access={"remote_second": True, "pair": "two-keepers"})
    cab = (
        Cabinet(tmp_path, policy)
        .badge("A", KEEPER)
        .command("approve", person="p-1001", by="p-1003")
    )
    assert cab.data("access.granted")[0]["persons"] == ["p-1001", "p-1003"]


def test_a_remote_approval_without_by_is_bad_args(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"remote_second": True})).badge("A", USER)
    cab.command("approve", person="p-1002")
    assert cab.data("command.rejected")[0]["reason"] == "bad_args"
    assert not cab.relay


def test_remote_approval_is_refused_when_the_policy_does_not_allow_it(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"remote_second": False})).badge("A", KEEPER)
    cab.command("approve", person="p-1001", by="p-1003")
    assert cab.data("command.rejected")[0]["reason"] == "remote_second_disabled"
    assert not cab.relay


def test_remote_approval_for_someone_not_pending_is_refused(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"remote_second": True})).badge("A", KEEPER)
    cab.command("approve", person="p-1003", by="p-1003")
    assert cab.data("command.rejected")[0]["reason"] == "not_pending"


def test_a_new_policy_makes_a_pending_person_badge_again(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).badge("A", KEEPER)
    newer = example_policy().model_copy(update={"version": 8})
    cab.feed(i.PolicyLoaded(newer, None, "command")).badge("B", USER)
    assert cab.data("access.expired")[0]["reason"] == "policy_changed"
    assert not cab.data("access.granted")


def test_an_operator_may_acknowledge_but_never_opens_the_cabinet(tmp_path):
    doc = example_policy().model_dump(by_alias=True)
    doc["person"] = [
        *doc["person"],
        {"id": "op-7", "name": "Duty Operator", "roles": ["operator"], "cards": ["04AB00000007"]},
    ]
    cab = (
        Cabinet(tmp_path, Policy.model_validate(doc)).badge("A", KEEPER).badge("B", "04AB00000007")
    )
    assert cab.denials() == ["not_authorized"] and not cab.relay
    cab.feed(i.LeakChanged(True))
    cab.command("ack", alarm=cab.data("alarm.raised")[0]["alarm"], by="op-7")
    assert cab.data("alarm.acknowledged")[0]["by"] == "op-7"
