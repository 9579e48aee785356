"""Property: whatever people and sensors do, the two-person rule and the alarm book hold.

A hypothesis state machine drives the rules with random badges, door moves, weights,
VOC, leaks, remote approvals, acks, resolves, restarts and time jumps — thousands of
runs on `CabinetRules` and a timer heap alone (tests/rules/pure.py), and a twentieth as
many on the real core and outbox (SQLite, signing) to keep that stand-in honest — and
checks after every step:
- `lock.unlocked` only follows an `access.granted` of two different persons, both
  authorised at that moment, satisfying the pair rule, the second within the window;
- the relay is energised only inside a granted session's unlock window;
- every `alarm.cleared` names an alarm raised earlier and still open, and no alarm is
  raised for a condition that already has an open one;
- the books: every container's book is its opening book − withdrawn + returned, as
  folded from the record, in each event's `book_mg` and in the rules' own state;
  every change of the books names two distinct valid persons;
- seq grows by exactly 1 and the hash chain verifies.

A `restart` step is a power cut at that instant: all of the above holds across it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from agent.wire import verify_chain
from rules import inputs as i
from rules.access import pair_allowed
from rules.session import Phase
from tests.rules.harness import (
    EXPIRED,
    KEEPER,
    KEEPER2,
    START_MS,
    SUSPENDED,
    USER,
    USER_SECOND_CARD,
    Cabinet,
    alarm_condition,
    example_policy,
)
from tests.rules.pure import RulesOnly

CARDS = [KEEPER, KEEPER2, USER, USER_SECOND_CARD, SUSPENDED, EXPIRED, "04000000BAD1"]
PEOPLE = ["p-1001", "p-1002", "p-1003", "p-1004", "p-1005"]
TMP_ROOT = "/dev/shm" if os.path.isdir("/dev/shm") else None  # cheap fsyncs for 2,000 runs
EXAMPLES = int(os.environ.get("CABINET_STATEFUL_EXAMPLES", "2000"))


class CabinetMachine(RuleBasedStateMachine):
    """On the rules alone (fast); IntegratedMachine below runs it on the real core."""

    integrated = False

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="cab-prop-", dir=TMP_ROOT))
        self.t = 0.0
        self.checked = 0
        self.open_alarms: dict[str, tuple[object, ...]] = {}
        self.relay_session: str | None = None
        self.books: dict[str, int] = {}

    @initialize(
        pair=st.sampled_from(["keeper+any", "two-keepers", "any-two"]),
        distinct=st.booleans(),
        remote=st.booleans(),
        lockout_after=st.integers(2, 6),
    )
    def setup(self, pair: str, distinct: bool, remote: bool, lockout_after: int) -> None:
        self.policy = example_policy(
            access={
                "pair": pair,
                "distinct_readers": distinct,
                "remote_second": remote,
                "lockout_after": lockout_after,
                "pair_window_s": 30,
                "unlock_s": 10,
            },
            environment={"voc_hold_s": 5},
            inventory={"settle_s": 2},
        )
        self.cab: Any = (
            Cabinet(self.tmp, self.policy) if self.integrated else RulesOnly(self.policy)
        )
        self.books = {box.id: box.mass_mg for box in self.policy.container}

    def teardown(self) -> None:
        if self.integrated and hasattr(self, "cab"):
            report = verify_chain(self.cab.events(), self.cab.outbox._key.public)
            self.cab.outbox.close()
            assert report.ok, report.failures
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- what happens at the cabinet ----------------------------------------------------
    @rule(reader=st.sampled_from(["A", "B"]), card=st.sampled_from(CARDS))
    def badge(self, reader: str, card: str) -> None:
        self.cab.badge(reader, card)

    @rule(open_=st.booleans())
    def door(self, open_: bool) -> None:
        self.cab.door("open" if open_ else "closed")

    @rule(slot=st.sampled_from([3, 4, 9]), mg=st.integers(0, 900_000))
    def weight(self, slot: int, mg: int) -> None:
        self.cab.weight(slot, mg)

    @rule(ppb=st.integers(0, 20_000))
    def voc(self, ppb: int) -> None:
        self.cab.feed(i.VocReading(ppb))

    @rule(wet=st.booleans())
    def leak(self, wet: bool) -> None:
        self.cab.feed(i.LeakChanged(wet))

    @rule(
        person=st.sampled_from(PEOPLE),
        by=st.sampled_from([*PEOPLE, "op-duty"]),
    )
    def remote_approval(self, person: str, by: str) -> None:
        self.cab.command("approve", person=person, by=by)

    @precondition(lambda self: bool(self.open_alarms))
    @rule(data=st.data(), by=st.sampled_from(PEOPLE))
    def ack(self, data: st.DataObject, by: str) -> None:
        alarm = data.draw(st.sampled_from(sorted(self.open_alarms)))
        self.cab.command("ack", alarm=alarm, by=by, comment="seen")

    @precondition(lambda self: bool(self.open_alarms))
    @rule(
        data=st.data(),
        persons=st.lists(st.sampled_from(PEOPLE), min_size=2, max_size=2),
        reason=st.sampled_from(["recount", "spill", "other"]),
    )
    def resolve(self, data: st.DataObject, persons: list[str], reason: str) -> None:
        alarm = data.draw(st.sampled_from(sorted(self.open_alarms)))
        self.cab.command("resolve", alarm=alarm, reason=reason, persons=persons, comment="n")

    @rule(
        container=st.sampled_from(["c-NaCN-01", "c-KMnO4-01"]),
        persons=st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=2, unique=True),
    )
    def disposal_approval(self, container: str, persons: list[str]) -> None:
        until = START_MS + 10**8
        args = {"container": container, "persons": persons, "until_ms": until}
        self.cab.command("approve_disposal", by="p-1003", purpose="waste", **args)

    @rule(persons=st.lists(st.sampled_from(PEOPLE), min_size=2, max_size=2))
    def stocktake(self, persons: list[str]) -> None:
        self.cab.command("stocktake", persons=persons)

    @rule()
    def restart(self) -> None:
        self.cab.restart()

    @rule(seconds=st.sampled_from([0.5, 1, 3, 5, 9, 11, 29, 31, 125, 400]))
    def time_passes(self, seconds: float) -> None:
        self.t += seconds
        self.cab.at(self.t)

    # --- what must always hold -------------------------------------------------------------
    @invariant()
    def the_record_keeps_the_rules(self) -> None:
        if not hasattr(self, "cab"):
            return
        events = self.cab.events()
        for index in range(self.checked, len(events)):
            event = events[index]
            assert event["seq"] == index + 1, "seq must grow by exactly one"
            kind, data = event["type"], event["data"]
            if kind == "lock.unlocked":
                self._check_grant_before(events, index, data["session"])
            elif kind == "alarm.raised":
                condition = alarm_condition(data)
                assert condition not in self.open_alarms.values(), f"raised twice: {data}"
                self.open_alarms[data["alarm"]] = condition
            elif kind == "alarm.cleared":
                assert data["alarm"] in self.open_alarms, "cleared an alarm never raised"
                del self.open_alarms[data["alarm"]]
            elif kind in ("inventory.withdrawal", "inventory.return", "inventory.adjusted"):
                self._check_books_move(event)
            elif kind == "inventory.disposed":
                assert data["book_mg"] == self.books.pop(data["container"])
        self.checked = len(events)

    @invariant()
    def the_books_are_the_fold_of_the_record(self) -> None:
        if not hasattr(self, "cab"):
            return
        self.the_record_keeps_the_rules()  # fold what the last step recorded first
        kept = {s.container: s.book for s in self.cab.rules.ledger.slots.values() if s.container}
        assert kept == self.books

    def _check_books_move(self, event: dict) -> None:
        data = event["data"]
        if event["type"] == "inventory.adjusted" and data["container"] is None:
            assert data["delta_mg"] == 0  # an unknown item settled: no book moves
        elif event["type"] == "inventory.adjusted":
            assert data["book_before_mg"] == self.books[data["container"]]
            self.books[data["container"]] += data["delta_mg"]
            assert data["book_after_mg"] == self.books[data["container"]]
            for person_id in data["persons"]:
                person = self.policy.person_by_id(person_id)
                assert person is not None and {"keeper", "safety_officer"} & set(person.roles)
        else:
            sign = -1 if event["type"] == "inventory.withdrawal" else 1
            self.books[data["container"]] += sign * data["amount_mg"]
            assert data["book_mg"] == self.books[data["container"]], "book_mg is not the fold"
        persons = data["persons"]
        assert len(persons) == 2 and persons[0] != persons[1]
        for person_id in persons:
            person = self.policy.person_by_id(person_id)
            assert person is not None, f"{person_id} is not a person of the policy"

    @invariant()
    def the_relay_is_never_on_without_a_session(self) -> None:
        if not hasattr(self, "cab"):
            return
        rules = self.cab.rules
        if rules.outputs["lock"]:
            assert rules.session is not None and rules.session.phase is Phase.UNLOCKED

    def _check_grant_before(self, events: list[dict], index: int, session: str) -> None:
        granted = events[index - 1]
        assert granted["type"] == "access.granted" and granted["data"]["session"] == session
        persons = granted["data"]["persons"]
        assert len(persons) == 2 and persons[0] != persons[1]
        first = self.policy.person_by_id(persons[0])
        assert first is not None and first.valid_at(granted["ts"])
        pending = [
            e
            for e in events[:index]
            if e["type"] == "access.pending" and e["data"]["person"] == persons[0]
        ]
        assert pending and granted["ts"] <= pending[-1]["data"]["expires_at_ms"]
        assert pending[-1]["boot"] == granted["boot"], "a pending badge outlived a restart"
        second = self.policy.person_by_id(persons[1])
        assert second is not None and second.valid_at(granted["ts"])
        assert pair_allowed(self.policy.access.pair, first, second)
        if granted["data"]["mode"] == "remote":
            assert self.policy.access.remote_second
            assert {"keeper", "safety_officer"} & set(second.roles)
            return
        if self.policy.access.distinct_readers:
            assert granted["data"]["readers"][0] != granted["data"]["readers"][1]


class IntegratedMachine(CabinetMachine):
    """The same machine on the real core and outbox (SQLite, signing): fewer examples."""

    integrated = True


CabinetMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
IntegratedMachine.TestCase.settings = settings(
    max_examples=max(EXAMPLES // 20, 20),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_two_person_rule_and_alarm_book_hold_under_random_use = CabinetMachine.TestCase
test_the_same_holds_on_the_real_core_and_outbox = IntegratedMachine.TestCase
