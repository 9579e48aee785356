"""Discrepancies are resolved, not acknowledged away (双人记账).

A mass alarm says the books and the stock disagree. `ack` only silences it; `resolve`
closes it: two distinct persons, each a keeper or safety officer, valid now, give a
reason (and a comment for `other`), and the book of the slot becomes the settled
measured content — recorded as `inventory.adjusted` (before, after, delta, reason, both
persons; the delta may be 0) — then the alarm clears with `resolved`. The weight must
have settled: nobody signs for a number that is still moving.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.policy import Policy
from rules.access import APPROVER_ROLES
from rules.alarms import MASS_KINDS, OpenAlarm
from rules.books import Slot
from rules.command_args import Resolve
from rules.inventory import MassLedger
from rules.step import Step


@dataclass(frozen=True)
class Settlement:
    alarm: OpenAlarm
    slot: Slot


def check(ctx: Step, ledger: MassLedger, cmd: Resolve) -> Settlement | str:
    """What `cmd` would settle, or the reason it is refused."""
    policy = ctx.policy
    alarm = ctx.alarms.find(cmd.alarm)
    if alarm is None:
        return "unknown_alarm"
    if alarm.kind not in MASS_KINDS:
        return "not_resolvable"
    if policy is None:
        return "no_policy"
    refusal = two_signers(ctx, policy, cmd.persons)
    if refusal is not None:
        return refusal
    slot = _slot_of(alarm, ledger)
    if slot is None or (slot.container is not None and not slot.present):
        return "not_resolvable"  # nothing on the scale to take as the count
    if slot.settled is None or slot.candidate != slot.settled:
        return "not_settled"
    if slot.container is not None and MassLedger.is_empty(policy, slot, slot.settled):
        # The bottle itself is not on the scale: there is no content to count. It has
        # to be put back (or leave for good through a disposal) before the books move.
        return "not_resolvable"
    return Settlement(alarm, slot)


def two_signers(ctx: Step, policy: Policy, persons: list[str]) -> str | None:
    """Two distinct persons, each valid now and a keeper or safety officer, sign for the
    books; the reason they cannot, or None."""
    first, second = persons
    if first == second:
        return "same_person"
    for person_id in persons:
        person = policy.person_by_id(person_id)
        if person is None:
            return "unknown_person"
        if not person.valid_at(ctx.now.wall_ms):
            return "not_authorized"
        if not APPROVER_ROLES & set(person.roles):
            return "role_requirement"
    return None


def stocktake(ctx: Step, ledger: MassLedger, persons: list[str]) -> str | None:
    """Attest every slot now: `inventory.stocktake`; a slot out of tolerance with no open
    mass alarm raises `mass_unexplained` (a loss nobody had noticed). None, or why not."""
    policy = ctx.policy
    if policy is None:
        return "no_policy"
    refusal = two_signers(ctx, policy, persons)
    if refusal is not None:
        return refusal
    rows = [ledger.count(policy, n) for n in sorted(ledger.slots) if ledger.slots[n].container]
    data = {"persons": list(persons), "slots": rows, "all_ok": all(r["ok"] for r in rows)}
    ctx.emit("inventory.stocktake", "info", data)
    for row in rows:
        if not row["ok"]:  # raises mass_unexplained unless that slot already has one open
            ledger.check_unattended(ctx, policy, row["slot"])
    return None


def settle(
    ctx: Step, policy: Policy, ledger: MassLedger, cmd: Resolve, settlement: Settlement
) -> None:
    slot, alarm = settlement.slot, settlement.alarm
    measured = slot.settled or 0
    before = slot.book
    after = max(measured - slot.tare, 0) if slot.container is not None else 0
    slot.book = after
    data = {
        "container": slot.container,
        "slot": slot.slot,
        "book_before_mg": before,
        "book_after_mg": after,
        "delta_mg": after - before,
        "reason": cmd.reason,
        "persons": list(cmd.persons),
        "alarm": alarm.id,
        "comment": cmd.comment,
    }
    ctx.emit("inventory.adjusted", "warning", data)
    ctx.alarms.resolved(ctx.out, alarm)
    # Another discrepancy of the same slot may have been settled by the new book.
    if ctx.alarms.is_open("mass_unexplained", str(slot.slot)):
        ledger.check_unattended(ctx, policy, slot.slot)


def _slot_of(alarm: OpenAlarm, ledger: MassLedger) -> Slot | None:
    if alarm.slot is not None:
        return ledger.slots.get(alarm.slot)
    return next((s for s in ledger.slots.values() if s.container == alarm.container), None)
