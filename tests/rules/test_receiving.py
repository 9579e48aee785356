"""Receiving (双人收): a new container is booked when two persons put it in its slot."""

from __future__ import annotations

from config.policy import Policy
from rules import inputs as i
from tests.rules.harness import Cabinet, example_policy

NEW = {"id": "c-As2O3-01", "slot": 5, "cas": "1327-53-3", "tare_mg": 80_000, "mass_mg": 100_000}


def with_an_incoming_bottle(tmp_path) -> Cabinet:
    cab = Cabinet(tmp_path, example_policy(), scales_report=True).weight(5, 0).at(6)
    doc = example_policy().model_dump(by_alias=True)
    doc["version"], doc["container"] = 8, [*doc["container"], NEW]
    return cab.feed(i.PolicyLoaded(Policy.model_validate(doc), None, "command"))


def put_in(cab: Cabinet, t: float, gross: int) -> Cabinet:
    cab.at(t).open_with_pair().at(t + 1).door("open").weight(5, gross)
    return cab.at(t + 3).door("closed").at(t + 15)


def test_a_bottle_received_within_the_delivery_note_starts_its_book_at_the_count(tmp_path):
    cab = put_in(with_an_incoming_bottle(tmp_path), 10, 80_000 + 101_000)
    received = cab.data("inventory.received")
    assert [
        (r["container"], r["expected_mg"], r["measured_mg"], r["book_mg"]) for r in received
    ] == [("c-As2O3-01", 100_000, 101_000, 101_000)]
    assert received[0]["persons"] == ["p-1001", "p-1002"]
    assert cab.alarms_raised() == []


def test_a_delivery_short_of_its_note_is_also_a_mismatch(tmp_path):
    cab = put_in(with_an_incoming_bottle(tmp_path), 10, 80_000 + 60_000)
    assert cab.data("inventory.received")[0]["book_mg"] == 60_000
    assert cab.alarms_raised() == ["mass_mismatch"]


def test_an_incoming_bottle_is_neither_overdue_nor_unknown_until_it_arrives(tmp_path):
    cab = with_an_incoming_bottle(tmp_path).at(20_000)
    assert cab.alarms_raised() == []


def test_a_bottle_put_in_outside_a_session_is_unexplained_not_received(tmp_path):
    cab = with_an_incoming_bottle(tmp_path).weight(5, 180_000).at(20)
    assert cab.data("inventory.received") == []
    assert cab.alarms_raised() == ["mass_unexplained"]


def test_an_incoming_bottle_stays_incoming_across_a_restart(tmp_path):
    cab = with_an_incoming_bottle(tmp_path).restart()
    put_in(cab, 10, 80_000 + 100_000)
    assert cab.data("inventory.received")[0]["book_mg"] == 100_000
