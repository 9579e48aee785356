"""The names and roles the console shows come from the policies, per cabinet."""

from __future__ import annotations

from central.store import Store


def test_the_persons_of_a_cabinet_come_with_their_roles_and_the_cabinets_own_names_win(
    store: Store,
) -> None:
    store.set_policy_names("*", {"version": 1, "person": [
        {"id": "p-1", "name": "Any cabinet's name", "roles": ["user"]},
        {"id": "p-2", "name": "乙", "roles": ["keeper", "safety_officer"]},
    ]})  # fmt: skip
    store.set_policy_names("cab-1", {"version": 2, "person": [
        {"id": "p-1", "name": "甲", "roles": ["keeper"]},
        {"id": "p-3", "name": "丙", "roles": "keeper"},  # not a list: roles unknown
    ]})  # fmt: skip
    assert store.persons("cab-1") == [  # by name, in code point order
        ("p-3", "丙", ()),
        ("p-2", "乙", ("keeper", "safety_officer")),
        ("p-1", "甲", ("keeper",)),
    ]
    assert store.persons("cab-other") == [
        ("p-1", "Any cabinet's name", ("user",)),
        ("p-2", "乙", ("keeper", "safety_officer")),
    ]
