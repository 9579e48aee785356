"""cabinetctl judges the persons of a command as the cabinet does: for every pair rule and
every pending person and approver of a policy, it signs exactly the remote approvals the
real rules grant, and exactly the stocktakes and acknowledgers they take
(tests.rules.harness: the agent's core on a virtual clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.cli_checks import CabinetPolicy, check_approve, check_two_signers
from central.errors import CentralError
from config.policy import Policy
from tests.rules.harness import START_MS, Cabinet, example_policy

SAFETY_ONLY = {
    "id": "p-1006",
    "name": "Sun Li",
    "roles": ["safety_officer"],
    "cards": ["04C0FFEE0006"],
}
OPERATOR = {"id": "p-1007", "name": "Zhou Min", "roles": ["operator"], "cards": ["04C0FFEE0007"]}


def policy_with(pair: str) -> Policy:
    base = example_policy(access={"remote_second": True, "pair": pair, "pair_window_s": 600})
    doc = base.model_dump(by_alias=True)
    doc["person"] = [*doc["person"], SAFETY_ONLY, OPERATOR]
    return Policy.model_validate(doc)


def cabinetctl_signs(policy: Policy, person: str, by: str) -> bool:
    try:
        check_approve(CabinetPolicy(policy, "test", "cab-chem-0042", START_MS), person, by)
    except CentralError:
        return False
    return True


def the_cabinet_grants(tmp: Path, policy: Policy, person: str, by: str) -> bool:
    waiting = policy.person_by_id(person)
    assert waiting is not None
    cab = Cabinet(tmp, policy).badge("A", waiting.cards[0]).command("approve", person=person, by=by)
    return bool(cab.data("access.granted"))


@pytest.mark.parametrize("pair", ["any-two", "keeper+any", "two-keepers"])
def test_cabinetctl_signs_exactly_the_remote_approvals_the_cabinet_grants(
    tmp_path: Path, pair: str
) -> None:
    policy = policy_with(pair)
    ids = [p.id for p in policy.person]
    judged = {}
    for person in ids:
        for by in [*ids, "op-duty"]:
            tmp = tmp_path / f"{person}-{by}"
            tmp.mkdir()
            granted = the_cabinet_grants(tmp, policy, person, by)
            assert cabinetctl_signs(policy, person, by) == granted, (person, by)
            judged[(person, by)] = granted
    # the cases that matter are there: some granted, some refused
    assert any(judged.values()) and not all(judged.values())
    # a user's badge, a keeper approves; a keeper's, a safety officer who is no keeper
    assert judged[("p-1002", "p-1001")] is (pair != "two-keepers")
    assert judged[("p-1001", "p-1006")] is (pair != "two-keepers")
    assert judged[("p-1002", "p-1006")] is (pair == "any-two")


def test_cabinetctl_signs_exactly_the_stocktakes_and_acks_the_cabinet_takes(
    tmp_path: Path,
) -> None:
    policy = policy_with("keeper+any")
    rules = CabinetPolicy(policy, "test", "cab-chem-0042", START_MS)
    ids = [*(p.id for p in policy.person), "op-duty"]
    for first in ids:
        for second in ids:
            home = tmp_path / f"stocktake-{first}-{second}"
            home.mkdir()
            cab = Cabinet(home, policy)
            taken = bool(
                cab.command("stocktake", persons=[first, second]).data("inventory.stocktake")
            )
            try:
                check_two_signers(rules, (first, second))
                signed = True
            except CentralError:
                signed = False
            assert signed == taken, (first, second)
    for by in ids:
        # An alarm id the cabinet does not know: it judges `by` first, then the alarm.
        home = tmp_path / f"ack-{by}"
        home.mkdir()
        cab = Cabinet(home, policy).command("ack", alarm="A9-9", by=by)
        took_by = cab.data("command.rejected")[0]["reason"] == "unknown_alarm"
        try:
            rules.person("--by", by)
            signed = True
        except CentralError:
            signed = False
        assert signed == took_by, by
