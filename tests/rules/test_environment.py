"""Leaks must trigger ventilation and alarms; VOC with hysteresis; silent sensors."""

from __future__ import annotations

from rules import inputs as i
from tests.rules.harness import Cabinet, example_policy


def voc(cab: Cabinet, t: float, ppb: int) -> Cabinet:
    return cab.at(t).feed(i.VocReading(ppb))


def test_voc_above_the_alarm_level_for_the_hold_time_raises_voc_high_with_fan_and_buzzer(tmp_path):
    cab = Cabinet(tmp_path, example_policy())
    voc(cab, 0, 12_000)
    voc(cab, 5, 12_500).at(9.9)
    assert cab.alarms_raised() == []
    cab.at(10)
    assert cab.alarms_raised() == ["voc_high"]
    assert cab.output("fan") and cab.output("buzzer")


def test_a_voc_spike_shorter_than_the_hold_time_does_not_alarm(tmp_path):
    cab = Cabinet(tmp_path, example_policy())
    voc(cab, 0, 12_000)
    voc(cab, 5, 3_000).at(30)
    assert cab.alarms_raised() == []


def test_voc_alarm_clears_only_after_staying_below_the_clear_level(tmp_path):
    cab = Cabinet(tmp_path, example_policy())
    voc(cab, 0, 12_000).at(10)
    for t, ppb in [(11, 9_000), (15, 4_500), (20, 9_500), (25, 4_200)]:
        voc(cab, t, ppb)  # wobbling between clear and alarm level: no flapping
    voc(cab, 50, 4_100).at(60)
    assert cab.alarms_cleared() == []
    voc(cab, 61, 3_000).at(70.9)
    assert cab.alarms_cleared() == []
    cab.at(71)
    assert cab.alarms_cleared() == ["voc_high"]
    assert not cab.output("fan")


def test_voc_between_warning_and_alarm_gives_one_warning_per_excursion(tmp_path):
    cab = Cabinet(tmp_path, example_policy())
    for t, ppb in [(0, 6_000), (1, 7_000), (2, 5_500), (3, 8_000)]:
        voc(cab, t, ppb)
    assert len(cab.data("env.voc_warning")) == 1
    voc(cab, 4, 1_000)
    voc(cab, 5, 6_000)
    assert len(cab.data("env.voc_warning")) == 2
    assert cab.alarms_raised() == []


def test_a_leak_raises_at_once_and_starts_ventilation(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).feed(i.LeakChanged(True))
    assert cab.alarms_raised() == ["leak"]
    assert cab.output("fan") and cab.output("buzzer")
    cab.feed(i.LeakChanged(False))
    assert cab.alarms_cleared() == ["leak"]
    assert not cab.output("fan")


def test_a_silent_sensor_becomes_a_sensor_fault_and_clears_when_it_reports_again(tmp_path):
    cab = Cabinet(tmp_path, example_policy(environment={"sensor_stale_s": 30}))
    voc(cab, 0, 100).at(29.9)
    assert cab.alarms_raised() == []
    cab.at(30)
    assert cab.data("alarm.raised")[0]["sensor"] == "voc"
    voc(cab, 40, 100)
    assert cab.alarms_cleared() == ["sensor_fault"]


def test_a_voc_reading_beyond_the_physical_range_is_a_fault_not_a_reading(tmp_path):
    cab = Cabinet(tmp_path, example_policy())
    voc(cab, 0, 5_000_000).at(20)
    assert cab.alarms_raised() == ["sensor_fault"]
    assert cab.rules.env.voc_ppb is None
    assert "voc_high" not in cab.alarms_raised()


def test_a_driver_reported_sensor_fault_is_an_alarm_until_recovered(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).feed(i.SensorFault("scale:3", "crc_errors"))
    assert cab.data("alarm.raised")[0]["sensor"] == "scale:3"
    cab.feed(i.SensorRecovered("scale:3"))
    assert cab.alarms_cleared() == ["sensor_fault"]


def test_an_unplugged_card_reader_is_a_reader_fault(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).feed(i.ReaderFault("B", "pcscd gone"))
    assert cab.data("alarm.raised")[0]["reader"] == "B"
    cab.feed(i.ReaderRecovered("B"))
    assert cab.alarms_cleared() == ["reader_fault"]


def test_ack_silences_the_buzzer_but_the_alarm_stays_until_its_condition_is_gone(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).feed(i.LeakChanged(True))
    alarm = cab.data("alarm.raised")[0]["alarm"]
    cab.command("ack", alarm=alarm, by="p-1003")
    assert not cab.output("buzzer")
    assert cab.alarms_cleared() == []
    assert cab.output("fan")
    cab.feed(i.LeakChanged(False))
    assert cab.data("alarm.cleared")[0]["alarm"] == alarm


def test_ack_of_an_unknown_alarm_is_rejected(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).command("ack", alarm="A9-99", by="p-1003")
    assert cab.data("command.rejected")[0]["reason"] == "unknown_alarm"


def test_every_alarm_gets_a_unique_id(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).feed(i.LeakChanged(True), i.TamperChanged(True))
    cab.feed(i.LeakChanged(False), i.LeakChanged(True))
    ids = [d["alarm"] for d in cab.data("alarm.raised")]
    assert len(ids) == len(set(ids)) == 3


def test_telemetry_is_reported_every_reading_period(tmp_path):
    cab = Cabinet(tmp_path, example_policy(environment={"reading_period_s": 60}))
    voc(cab, 1, 250).at(180)
    assert [d["voc_ppb"] for d in cab.data("env.reading")] == [250, 250, 250]


def test_an_unsynchronised_clock_is_flagged(tmp_path):
    cab = Cabinet(tmp_path, example_policy()).feed(i.ClockStatus(False))
    assert cab.alarms_raised() == ["clock_unsynced"]
    assert not cab.output("buzzer")  # a clock is no reason to sound the lab's alarm
    cab.feed(i.ClockStatus(True))
    assert cab.alarms_cleared() == ["clock_unsynced"]


def test_policy_versions_must_increase_and_be_for_this_cabinet(tmp_path):
    cab = Cabinet(tmp_path, example_policy())
    same = example_policy()
    other = example_policy().model_copy(update={"version": 9, "cabinet": "cab-bio-0001"})
    cab.feed(
        i.PolicyLoaded(same, None, "command", "n1"), i.PolicyLoaded(other, None, "command", "n2")
    )
    reasons = [d["reason"] for d in cab.data("policy.rejected")]
    assert reasons == ["version_not_newer", "wrong_cabinet"]
    assert cab.rules.policy is not None and cab.rules.policy.version == 7
