"""Door and lock: fail-secure relay, forced and held-open doors, tamper."""

from __future__ import annotations

from rules import inputs as i
from tests.rules.harness import Cabinet, example_policy


def test_relay_is_off_at_start_whatever_the_pins_did_before(tmp_path):
    cab = Cabinet(tmp_path, example_policy())
    assert ("lock", False) in cab.output_log
    assert cab.output_log.index(("lock", False)) < len(cab.output_log)
    assert not cab.relay


def test_relay_is_energised_from_grant_until_the_door_opens(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).open_with_pair()
    assert cab.relay
    cab.at(3).door("open")
    assert not cab.relay
    assert cab.data("lock.locked") == [{"session": "S1-1", "reason": "door_opened"}]
    assert [o for o in cab.output_log if o[0] == "lock"] == [
        ("lock", False),
        ("lock", True),
        ("lock", False),
    ]


def test_relay_drops_when_the_unlock_time_passes_with_the_door_shut(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"unlock_s": 10})).open_with_pair().at(10)
    assert not cab.relay
    assert cab.data("lock.locked") == [{"session": "S1-1", "reason": "timeout"}]
    cab.at(11).door("open")  # the session ended: opening now is forcing
    assert cab.alarms_raised() == ["door_forced"]


def test_door_opened_without_a_granted_session_is_forced(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).door("open")
    assert cab.data("door.opened") == [{"session": None}]
    assert cab.alarms_raised() == ["door_forced"]
    assert cab.output("buzzer")
    cab.door("closed")
    assert cab.alarms_cleared() == ["door_forced"]


def test_door_held_open_too_long_raises_and_clears_when_it_closes(tmp_path):
    cab = Cabinet(tmp_path, example_policy(access={"door_held_s": 120})).open_with_pair()
    cab.at(1).door("open").at(120.5)
    assert cab.alarms_raised() == []
    cab.at(121)
    assert cab.alarms_raised() == ["door_held_open"]
    cab.at(130).door("closed")
    raised, cleared = cab.data("alarm.raised")[0], cab.data("alarm.cleared")[0]
    assert cleared["alarm"] == raised["alarm"]


def test_a_door_closed_in_time_raises_nothing(tmp_path):
    cab = (
        Cabinet(tmp_path, example_policy())
        .open_with_pair()
        .at(1)
        .door("open")
        .at(60)
        .door("closed")
    )
    cab.at(500)
    assert cab.alarms_raised() == []


def test_an_opened_tamper_switch_raises_tamper_until_closed(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).feed(i.TamperChanged(True))
    assert cab.data("alarm.raised")[0]["kind"] == "tamper"
    cab.feed(i.TamperChanged(False))
    assert cab.alarms_cleared() == ["tamper"]


def test_a_bolt_not_engaged_while_locked_and_shut_is_tamper(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).door("closed").feed(i.LockFeedback(engaged=False))
    assert cab.data("alarm.raised")[0]["detail"] == "bolt_not_engaged"


def test_fan_ventilates_while_the_door_is_open(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).open_with_pair().door("open")
    assert cab.output("fan")
    cab.door("closed")
    assert not cab.output("fan")


def test_after_stopping_nothing_changes_and_the_relay_stays_off(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).feed(i.Stopping("signal")).open_with_pair()
    assert cab.types()[-1] == "system.stopping"
    assert not cab.relay
