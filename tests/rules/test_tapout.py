"""Tap-out (双人在场): both persons badge again after the door closes, or it is a breach."""

from __future__ import annotations

from tests.rules.harness import KEEPER, USER, Cabinet, example_policy


def closed_session(tmp_path) -> Cabinet:
    cab = Cabinet(tmp_path, example_policy(access={"tap_out_s": 30}))
    return cab.open_with_pair().at(2).door("open").at(5).door("closed")


def test_both_persons_tapping_out_closes_the_session_complete(tmp_path):
    cab = closed_session(tmp_path).at(10).badge("A", KEEPER).badge("B", USER)
    assert cab.data("access.closed") == [
        {"session": "S1-1", "persons_out": ["p-1001", "p-1002"], "complete": True}
    ]
    cab.at(60)
    assert cab.alarms_raised() == []


def test_a_tap_out_badge_never_starts_a_new_session(tmp_path):
    cab = closed_session(tmp_path).at(20).badge("A", KEEPER).badge("B", USER)
    assert [d["session"] for d in cab.data("access.granted")] == ["S1-1"]
    assert len(cab.data("access.pending")) == 1  # only the first session's


def test_one_person_missing_is_a_two_person_breach_that_an_ack_closes(tmp_path):
    cab = closed_session(tmp_path).at(10).badge("B", USER).at(40)
    assert cab.data("access.closed")[0] == {
        "session": "S1-1",
        "persons_out": ["p-1002"],
        "complete": False,
    }
    breach = cab.data("alarm.raised")[0]
    assert (breach["kind"], breach["missing"]) == ("two_person_breach", ["p-1001"])
    assert cab.output("buzzer")
    cab.command("ack", alarm=breach["alarm"], by="p-1003", comment="keeper left by the side door")
    assert cab.alarms_cleared() == ["two_person_breach"] and not cab.output("buzzer")


def test_the_tap_out_window_survives_a_restart(tmp_path):
    cab = closed_session(tmp_path).at(10).badge("A", KEEPER).restart().at(12).badge("B", USER)
    assert cab.data("access.closed")[0]["complete"] is True
