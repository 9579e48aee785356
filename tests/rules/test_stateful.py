"""Property: whatever people and sensors do, the two-person rule and the books hold.

A hypothesis state machine drives the rules with random badges, door moves, weights,
VOC, leaks, remote approvals, acks, resolves, stocktakes, restarts and time jumps, and
with whole two-person sessions at the shelves (a withdrawal, a return, a bottle taken
out or put back, a new bottle received, one disposed of under its approval, with or
without tap-out) — thousands of runs on `CabinetRules` and a timer heap alone
(tests/rules/pure.py), and a twentieth as many on the real core and outbox (SQLite,
signing) to keep that stand-in honest — and checks after every step:
- `lock.unlocked` only follows an `access.granted` of two different persons, both
  authorised at that moment, satisfying the pair rule, the second within the window;
- the relay is energised only inside a granted session's unlock window;
- every `alarm.cleared` names an alarm raised earlier and still open, and no alarm is
  raised for a condition that already has an open one;
- the books: every container's book is its opening book + received − withdrawn +
  returned + adjusted − disposed, as folded from the record (tests/torture/books.py),
  in each event's `book_mg` and in the rules' own state; every change of the books
  names two distinct persons, both valid (not suspended, within their dates) then;
- seq grows by exactly 1 and the hash chain verifies.

A `restart` step is a power cut at that instant: all of the above holds across it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from agent.wire import verify_chain
from config.policy import Policy
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
    example_policy,
)
from tests.rules.pure import RulesOnly
from tests.torture.books import Fold

CARDS = [KEEPER, KEEPER2, USER, USER_SECOND_CARD, SUSPENDED, EXPIRED, "04000000BAD1"]
PEOPLE = ["p-1001", "p-1002", "p-1003", "p-1004", "p-1005"]
TMP_ROOT = "/dev/shm" if os.path.isdir("/dev/shm") else None  # cheap fsyncs for 2,000 runs
EXAMPLES = int(os.environ.get("CABINET_STATEFUL_EXAMPLES", "2000"))
# The events that change the books (or where a container is), and how often each was
# seen: the plain test at the end proves the machine reaches every one of them.
BOOKS_CHANGES = (
    "inventory.withdrawal",
    "inventory.return",
    "inventory.removed",
    "inventory.restored",
    "inventory.received",
    "inventory.disposed",
    "inventory.adjusted",
)
SEEN: Counter[str] = Counter()
NEW_BOTTLE = {
    "id": "c-As2O3-01",
    "slot": 9,
    "name": "arsenic trioxide",
    "cas": "1327-53-3",
    "class": "highly_toxic",
    "tare_mg": 120_000,
    "mass_mg": 100_000,
}
WORLD = {3: 682_000, 4: 400_000, 9: 0}  # what the scales read at first (slot 9: empty)


class CabinetMachine(RuleBasedStateMachine):
    """On the rules alone (fast); IntegratedMachine below runs it on the real core."""

    integrated = False

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="cab-prop-", dir=TMP_ROOT))
        self.t = 0.0
        self.relay_session: str | None = None
        self.scale: dict[int, int] = dict(WORLD)

    @initialize(
        pair=st.sampled_from(["keeper+any", "two-keepers", "any-two"]),
        distinct=st.booleans(),
        remote=st.booleans(),
        lockout_after=st.integers(2, 6),
        tap_out_s=st.sampled_from([0, 0, 20]),
    )
    def setup(
        self, pair: str, distinct: bool, remote: bool, lockout_after: int, tap_out_s: int
    ) -> None:
        self.policy = example_policy(
            access={
                "pair": pair,
                "distinct_readers": distinct,
                "remote_second": remote,
                "lockout_after": lockout_after,
                "pair_window_s": 30,
                "unlock_s": 10,
                "tap_out_s": tap_out_s,
            },
            environment={"voc_hold_s": 5},
            inventory={"settle_s": 2},
        )
        self.cab: Any = (
            Cabinet(self.tmp, self.policy) if self.integrated else RulesOnly(self.policy)
        )
        self.fold = Fold(self.policy)
        for slot, mg in WORLD.items():
            self.cab.weight(slot, mg)
        self._wait(3)

    def teardown(self) -> None:
        if self.integrated and hasattr(self, "cab"):
            report = verify_chain(self.cab.events(), self.cab.outbox._key.public)
            self.cab.outbox.close()
            assert report.ok, report.failures
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _wait(self, seconds: float) -> None:
        self.t += seconds
        self.cab.at(self.t)

    # --- what happens at the cabinet ----------------------------------------------------
    @rule(reader=st.sampled_from(["A", "B"]), card=st.sampled_from(CARDS))
    def badge(self, reader: str, card: str) -> None:
        self.cab.badge(reader, card)

    @rule(open_=st.booleans())
    def door(self, open_: bool) -> None:
        self.cab.door("open" if open_ else "closed")

    @rule(slot=st.sampled_from([3, 4, 9]), mg=st.integers(0, 900_000))
    def weight(self, slot: int, mg: int) -> None:
        self.scale[slot] = mg
        self.cab.weight(slot, mg)

    @rule(ppb=st.integers(0, 20_000))
    def voc(self, ppb: int) -> None:
        self.cab.feed(i.VocReading(ppb))

    @rule(wet=st.booleans())
    def leak(self, wet: bool) -> None:
        self.cab.feed(i.LeakChanged(wet))

    @rule(person=st.sampled_from(PEOPLE), by=st.sampled_from([*PEOPLE, "op-duty"]))
    def remote_approval(self, person: str, by: str) -> None:
        self.cab.command("approve", person=person, by=by)

    @precondition(lambda self: bool(self.fold.open_alarms))
    @rule(data=st.data(), by=st.sampled_from(PEOPLE))
    def ack(self, data: st.DataObject, by: str) -> None:
        alarm = data.draw(st.sampled_from(sorted(self.fold.open_alarms)))
        self.cab.command("ack", alarm=alarm, by=by, comment="seen")

    @precondition(lambda self: bool(self.fold.open_alarms))
    @rule(
        data=st.data(),
        persons=st.one_of(
            st.just(["p-1001", "p-1003"]),
            st.lists(st.sampled_from(PEOPLE), min_size=2, max_size=2),
        ),
        reason=st.sampled_from(["recount", "spill", "other"]),
        settle_first=st.booleans(),
    )
    def resolve(
        self, data: st.DataObject, persons: list[str], reason: str, settle_first: bool
    ) -> None:
        if settle_first:
            self._wait(3)  # a resolve is refused while the weight still moves
        if not self.fold.open_alarms:
            return
        alarm = data.draw(st.sampled_from(sorted(self.fold.open_alarms)))
        self.cab.command("resolve", alarm=alarm, reason=reason, persons=persons, comment="n")

    @rule(
        kind=st.sampled_from(["approve_withdrawal", "approve_disposal"]),
        container=st.sampled_from(["c-NaCN-01", "c-KMnO4-01", NEW_BOTTLE["id"]]),
        max_mg=st.integers(1_000, 40_000),
        for_the_pair=st.booleans(),
        persons=st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=2, unique=True),
    )
    def approval(
        self, kind: str, container: str, max_mg: int, for_the_pair: bool, persons: list[str]
    ) -> None:
        who = self._pair_ids() if for_the_pair else persons
        args: dict[str, Any] = {"container": container, "persons": who}
        args |= {"until_ms": START_MS + 10**8, "by": "p-1003", "purpose": "assay"}
        if kind == "approve_withdrawal":
            args["max_mg"] = max_mg
        self.cab.command(kind, **args)

    @precondition(lambda self: hasattr(self, "cab") and self._idle())
    @rule(
        slot=st.sampled_from([3, 4, 9]),
        action=st.sampled_from(["take", "put_back", "take_out", "put_in"]),
        amount=st.integers(3_000, 60_000),
        tap_out=st.sampled_from(["both", "one", "none"]),
        approved=st.booleans(),
    )
    def two_person_session(
        self, slot: int, action: str, amount: int, tap_out: str, approved: bool
    ) -> None:
        self._session(slot, action, amount, tap_out, approved)

    @precondition(
        lambda self: hasattr(self, "cab") and self.cab.rules.session is None and bool(self._out())
    )
    @rule(data=st.data(), tap_out=st.sampled_from(["both", "one", "none"]))
    def a_bottle_is_put_in_its_slot(self, data: st.DataObject, tap_out: str) -> None:
        """A bottle taken out comes back, or an announced one is received. Without this
        rule that needed a random session to pick the slot and `put_in` (1 in 12) while
        the cabinet was idle, and a CI run of the coverage test below missed
        `inventory.restored` in all six of its runs."""
        slot = data.draw(st.sampled_from(self._out()))
        rules = self.cab.rules
        if rules.door_open:
            self.cab.door("closed")  # a door left open by a random step is shut first
        if rules.access.pending is not None or rules.tap_out is not None:
            # A badge left pending (a tap-out with tap_out_s 0 is a new first badge) would
            # pair with the keeper's: the pair waits until it and any tap-out have expired.
            self._wait(max(self.policy.access.pair_window_s, self.policy.access.tap_out_s) + 1)
        self._session(slot, "put_in", 3_000, tap_out, approved=False)

    def _session(self, slot: int, action: str, amount: int, tap_out: str, approved: bool) -> None:
        """A pair badges, opens, changes one slot, closes (and taps out), and waits;
        with `approved`, a withdrawal or disposal approval for the pair comes first."""
        held = self.cab.rules.ledger.slots.get(slot)
        if approved and held is not None and held.container and action in ("take", "take_out"):
            args: dict[str, Any] = {"container": held.container, "persons": self._pair_ids()}
            args |= {"until_ms": START_MS + 10**8, "by": "p-1003", "purpose": "assay"}
            if action == "take":
                self.cab.command("approve_withdrawal", max_mg=amount // 2, **args)
            else:
                self.cab.command("approve_disposal", **args)
        first, second = self._pair_cards()
        self.cab.badge("A", first)
        self._wait(1)
        self.cab.badge("B", second)
        if self.cab.rules.session is None:
            return  # refused (locked out, or the policy's pair does not allow it)
        self._wait(1)
        self.cab.door("open")
        self.scale[slot] = self._weight_after(slot, action, amount)
        self.cab.weight(slot, self.scale[slot])
        self._wait(1)
        self.cab.door("closed")
        for reader, card in [("A", first), ("B", second)][: {"both": 2, "one": 1}.get(tap_out, 0)]:
            self._wait(1)
            self.cab.badge(reader, card)
        self._wait(self.policy.inventory.settle_s + 3)

    @precondition(lambda self: hasattr(self, "cab") and NEW_BOTTLE["id"] not in self._named())
    @rule()
    def a_new_bottle_is_announced(self) -> None:
        """A policy update names a new container for slot 9 (incoming if the slot is
        empty, 双人收 then puts it in)."""
        doc = self.policy.model_dump(by_alias=True)
        doc["version"] += 1
        doc["container"] = [*doc["container"], NEW_BOTTLE]
        self.policy = Policy.model_validate(doc)
        self.cab.feed(i.PolicyLoaded(self.policy, None, "command"))
        self.fold.policy = self.policy
        slot = self.cab.rules.ledger.slots.get(NEW_BOTTLE["slot"])
        incoming = slot is not None and slot.expected is not None
        self.fold.present[NEW_BOTTLE["id"]] = not incoming
        if not incoming:  # something already on its scale: mass_mg opens its book
            self.fold.books[NEW_BOTTLE["id"]] = NEW_BOTTLE["mass_mg"]

    @rule(persons=st.lists(st.sampled_from(PEOPLE), min_size=2, max_size=2))
    def stocktake(self, persons: list[str]) -> None:
        self.cab.command("stocktake", persons=persons)

    @rule()
    def restart(self) -> None:
        self.cab.restart()

    @rule(seconds=st.sampled_from([0.5, 1, 3, 5, 9, 11, 29, 31, 125, 400]))
    def time_passes(self, seconds: float) -> None:
        self._wait(seconds)

    # --- helpers ------------------------------------------------------------------------
    def _idle(self) -> bool:
        rules = self.cab.rules
        return rules.session is None and not rules.door_open and rules.tap_out is None

    def _out(self) -> list[int]:
        """Slots waiting for their bottle: taken out by a session (its book kept) or
        announced and not yet received (双人收)."""
        slots = self.cab.rules.ledger.slots
        return sorted(n for n, s in slots.items() if s.container and not s.present)

    def _named(self) -> set[str]:
        return {box.id for box in self.policy.container}

    def _pair_cards(self) -> tuple[str, str]:
        return (KEEPER, KEEPER2) if self.policy.access.pair == "two-keepers" else (KEEPER, USER)

    def _pair_ids(self) -> list[str]:
        cards = self._pair_cards()
        return [p.id for card in cards if (p := self.policy.person_by_card(card)) is not None]

    def _weight_after(self, slot: int, action: str, amount: int) -> int:
        now = self.scale.get(slot, 0)
        held = self.cab.rules.ledger.slots.get(slot)
        tare = held.tare if held is not None and held.container else 0
        if action == "take":
            return max(now - amount, 0)
        if action == "put_back":
            return now + amount
        if action == "take_out":
            return 0
        box = self.policy.container_by_id(held.container) if held and held.container else None
        content = self.fold.books.get(box.id, box.mass_mg) if box else amount
        return tare + content + amount // 20  # put in: about what the books or note say

    # --- what must always hold -------------------------------------------------------------
    @invariant()
    def the_record_keeps_the_rules(self) -> None:
        if not hasattr(self, "cab"):
            return
        events = self.cab.events()
        new = [e for e in events if e["seq"] > self.fold.seq]
        for index, record in enumerate(events):
            if record["seq"] <= self.fold.seq:
                continue
            if record["type"] == "lock.unlocked":
                self._check_grant_before(events, index, record["data"]["session"])
            if record["type"] in BOOKS_CHANGES:
                SEEN[record["type"]] += 1
                event(f"books: {record['type']}")
                self._check_two_valid_persons(record)
        # The fold asserts seq by one, book_mg, alarms raised once and cleared once.
        self.fold.feed(new, "the machine")

    @invariant()
    def the_books_are_the_fold_of_the_record(self) -> None:
        if not hasattr(self, "cab"):
            return
        self.the_record_keeps_the_rules()  # fold what the last step recorded first
        kept = {
            s.container: s.book
            for s in self.cab.rules.ledger.slots.values()
            if s.container and s.expected is None  # an incoming bottle has no book yet
        }
        assert kept == {c: b for c, b in self.fold.books.items() if c in kept}
        assert set(self.fold.books) - set(kept) <= set(self.cab.rules.ledger.retired)

    def _check_two_valid_persons(self, record: dict) -> None:
        data = record["data"]
        persons = data["persons"]
        assert len(persons) == 2 and persons[0] != persons[1], record
        for person_id in persons:
            person = self.policy.person_by_id(person_id)
            assert person is not None, f"{person_id} is not a person of the policy"
            assert person.valid_at(record["ts"]), f"{person_id} not valid then: {record}"
            if record["type"] == "inventory.adjusted":
                assert {"keeper", "safety_officer"} & set(person.roles)

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


SETTINGS = {
    "stateful_step_count": 25,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
}
CabinetMachine.TestCase.settings = settings(max_examples=EXAMPLES, **SETTINGS)
IntegratedMachine.TestCase.settings = settings(max_examples=max(EXAMPLES // 20, 20), **SETTINGS)
test_two_person_rule_and_the_books_hold_under_random_use = CabinetMachine.TestCase
test_the_same_holds_on_the_real_core_and_outbox = IntegratedMachine.TestCase


def test_a_fixed_seed_run_reaches_every_kind_of_books_change():
    """The machine must not go vacuous again: a derandomised run of a few hundred
    examples reaches each change of the books at least once. The run follows set order,
    hence the process's hash seed, and a single random run misses its rarest kind about
    one time in five, so a kind missed by the fixed run gets up to eleven more random
    runs (3 s each): a kind the machine can no longer reach still fails, a rare one does
    not flake (40 random runs measured: no kind missed by more than 7 of them)."""
    SEEN.clear()
    for attempt in range(12):
        run_state_machine_as_test(
            CabinetMachine,
            settings=settings(
                max_examples=300, derandomize=attempt == 0, database=None, **SETTINGS
            ),
        )
        if all(SEEN[kind] for kind in BOOKS_CHANGES):
            break
    assert {kind for kind in BOOKS_CHANGES if SEEN[kind] == 0} == set(), SEEN
