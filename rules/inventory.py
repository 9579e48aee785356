"""Mass balance (账物相符): every gram that leaves a slot is attributed, or it is an alarm.

Each slot's gross weight settles when it stays within tolerance for `settle_s`. The
books, not the scale, are the baseline of a session: once the door has closed and the
weights settle, each slot that differs from its book becomes removed / restored /
withdrawal / return, attributed to the session's two persons, and the books move.
Outside a session, and inside one before its door opens, any settled difference from
the books is `mass_unexplained`; a session never absorbs such an open discrepancy: on
that slot only the change seen while the door was open (door-open weight to settled
weight) is booked to the session's persons, and the alarm stays open for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from config.policy import Policy
from rules import ledger_state, receipt_and_disposal
from rules.books import Approval, Slot
from rules.effects import Instant
from rules.step import Step
from rules.timers import Overdue, Settle


@dataclass
class SessionView:
    id: str
    persons: tuple[str, ...]
    # Gross weight at door-open of each slot that had an open mass_unexplained then: what
    # the session itself changed there is measured from this, not from the books.
    opened_gross: dict[int, int] = field(default_factory=dict)


class MassLedger:
    def __init__(self) -> None:
        self.slots: dict[int, Slot] = {}
        self.approvals: list[Approval] = []
        self.disposals: list[Approval] = []  # approve_disposal, not yet used (max_mg 0)
        self.disposed: set[str] = set()  # left for good: a policy cannot bring them back
        self.retired: dict[str, Slot] = {}  # last books of containers a policy dropped

    # --- policy ------------------------------------------------------------------------

    def load(self, policy: Policy) -> None:
        """Take containers from the policy. `mass_mg` opens the book of a container the
        cabinet does not keep a book for yet; once it does, the book is the record's, and
        a changed `mass_mg` does not move it (a routine policy update loses no withdrawal)."""
        old = {**self.retired, **{s.container: s for s in self.slots.values() if s.container}}
        slots: dict[int, Slot] = {
            n: Slot(n, None, candidate=s.candidate, since_mono=s.since_mono, settled=s.settled)
            for n, s in self.slots.items()
        }
        for box in policy.container:
            if box.id in self.disposed:
                continue
            prev = old.get(box.id)
            slot = slots.get(box.slot) or Slot(box.slot, None)
            slot.container, slot.tare = box.id, box.tare_mg
            slot.book = box.mass_mg if prev is None else prev.book
            if (
                prev is None
                and slot.settled is not None
                and self.is_empty(policy, slot, slot.settled)
            ):
                # A new container for a slot that is empty now: incoming until a session
                # puts it in its slot (双人收); mass_mg is its delivery note.
                slot.present, slot.book, slot.expected, slot.due_wall_ms = (
                    False,
                    0,
                    box.mass_mg,
                    None,
                )
            elif prev is None or prev.slot != box.slot:
                slot.present, slot.due_wall_ms, slot.expected = True, None, None
            else:
                slot.present, slot.due_wall_ms = prev.present, prev.due_wall_ms
                slot.expected = prev.expected
            slots[box.slot] = slot
        self.slots = slots
        # A container the policy no longer names keeps its last book: the record decided
        # it, and a later policy naming it again must not reopen it from `mass_mg`.
        kept = {s.container for s in slots.values() if s.container}
        self.retired = {c: s for c, s in old.items() if c not in kept}

    # --- readings ----------------------------------------------------------------------

    def reading(self, ctx: Step, policy: Policy, slot_no: int, mg: int) -> bool:
        """Feed one reading; True when it settled at once (settle_s = 0)."""
        slot = self.slots.setdefault(slot_no, Slot(slot_no, None, present=False))
        if slot.candidate is not None and abs(mg - slot.candidate) <= self.tolerance(policy, slot):
            return False
        slot.candidate, slot.since_mono = mg, ctx.now.mono_ms
        if policy.inventory.settle_s == 0:
            slot.settled = mg
            return True
        ctx.start(Settle(slot_no), policy.inventory.settle_s * 1000)
        return False

    def settle(self, now: Instant, policy: Policy, slot_no: int) -> bool:
        """Settle timer fired: True if the slot's settled weight changed."""
        slot = self.slots.get(slot_no)
        if slot is None or slot.candidate is None:
            return False
        if now.mono_ms - slot.since_mono < policy.inventory.settle_s * 1000:
            return False  # moved again since the timer was set; a newer timer is pending
        changed = slot.settled != slot.candidate
        slot.settled = slot.candidate
        return changed

    def all_settled(self) -> bool:
        return all(s.candidate is None or s.settled == s.candidate for s in self.slots.values())

    # --- outside a session -------------------------------------------------------------

    def check_unattended(self, ctx: Step, policy: Policy, slot_no: int) -> None:
        slot = self.slots[slot_no]
        if slot.settled is None:
            return
        subject = str(slot_no)
        if slot.container is None:
            self._check_unknown_item(ctx, policy, slot)
            return
        expected = slot.tare + slot.book if slot.present else 0
        if abs(slot.settled - expected) <= self.tolerance(policy, slot):
            ctx.clear("mass_unexplained", subject, slot=slot_no)
            # Weight on a slot the policy now names again, matching its book: known.
            ctx.clear("unknown_item", subject, slot=slot_no)
        else:
            ctx.raise_(
                "mass_unexplained",
                subject,
                slot=slot_no,
                container=slot.container,
                expected_mg=expected,
                measured_mg=slot.settled,
            )

    # --- sessions ----------------------------------------------------------------------

    def reconcile(self, ctx: Step, policy: Policy, session: SessionView) -> None:
        for slot_no in sorted(self.slots):
            slot = self.slots[slot_no]
            gross = slot.gross
            if gross is None:
                continue
            if slot.container is None:
                self._check_unknown_item(ctx, policy, slot)
                continue
            if ctx.alarms.is_open("mass_unexplained", str(slot_no)):
                # A discrepancy from before the door opened is not the session's to book;
                # what changed while the door was open is. A container taken out or put
                # back across an open discrepancy is left to the alarm (resolve first).
                before = session.opened_gross.get(slot_no)
                if (
                    before is not None
                    and slot.present
                    and not self.is_empty(policy, slot, before)
                    and not self.is_empty(policy, slot, gross)
                ):
                    self._book(ctx, policy, session, slot, before - gross)
                self.check_unattended(ctx, policy, slot_no)
                continue
            self._reconcile_slot(ctx, policy, session, slot, gross)

    @staticmethod
    def _common(session: SessionView, slot: Slot) -> dict[str, Any]:
        return {
            "session": session.id,
            "persons": list(session.persons),
            "slot": slot.slot,
            "container": slot.container,
        }

    def _reconcile_slot(
        self, ctx: Step, policy: Policy, session: SessionView, slot: Slot, gross: int
    ) -> None:
        box = policy.container_by_id(slot.container or "")
        cas = box.cas if box else ""
        common = self._common(session, slot)
        empty = self.is_empty(policy, slot, gross)
        if slot.present and empty:
            disposal = self._take(self.disposals, ctx.now, slot.container or "", session.persons)
            if disposal is not None:
                self.disposed.add(slot.container or "")
                receipt_and_disposal.dispose(ctx, slot, common, cas, disposal)
                return
            slot.present = False
            within_ms = policy.inventory.return_within_s * 1000
            slot.due_wall_ms = ctx.now.wall_ms + within_ms
            ctx.emit("inventory.removed", "info", dict(common))
            ctx.start(Overdue(slot.container or ""), within_ms)
            return
        if not slot.present and empty:
            return
        if slot.expected is not None:
            tolerance = self.tolerance(policy, slot)
            receipt_and_disposal.receive(ctx, slot, common, cas, gross, tolerance)
            return
        if not slot.present:
            slot.present = True
            slot.due_wall_ms = None
            ctx.emit("inventory.restored", "info", dict(common))
            ctx.cancel(Overdue(slot.container or ""))
            ctx.clear("overdue_return", slot.container or "", container=slot.container)
            taken = slot.book - (gross - slot.tare)
        else:
            taken = slot.tare + slot.book - gross
        self._book(ctx, policy, session, slot, taken)

    def _book(
        self, ctx: Step, policy: Policy, session: SessionView, slot: Slot, taken: int
    ) -> None:
        """`taken` mg left the container (negative: came back) in `session`: book it to
        the session's two persons, with the approval it uses, if beyond tolerance."""
        if abs(taken) <= self.tolerance(policy, slot):
            return
        if taken > slot.book:
            # The scale reads less than the empty bottle: no more than the book can have
            # been taken, and the rest is a discrepancy, not a withdrawal.
            measured = slot.tare + slot.book - taken
            if slot.book:
                self._book(ctx, policy, session, slot, slot.book)
            if slot.tare + slot.book - measured <= self.tolerance(policy, slot):
                return  # within tolerance of an empty bottle: scale noise
            ctx.raise_(
                "mass_unexplained",
                str(slot.slot),
                slot=slot.slot,
                container=slot.container,
                expected_mg=slot.tare + slot.book,
                measured_mg=measured,
            )
            return
        box = policy.container_by_id(slot.container or "")
        slot.book -= taken
        data: dict[str, Any] = {
            **self._common(session, slot),
            "cas": box.cas if box else "",
            "amount_mg": abs(taken),
            "book_mg": slot.book,
        }
        if taken < 0:
            ctx.emit("inventory.return", "info", data)
            return
        approval = self._take(self.approvals, ctx.now, slot.container or "", session.persons)
        data["approval"] = (
            None
            if approval is None
            else {"nonce": approval.nonce, "max_mg": approval.max_mg, "by": approval.by}
        )
        data["purpose"] = None if approval is None else approval.purpose
        ctx.emit("inventory.withdrawal", "info", data)
        if approval is not None and taken > approval.max_mg + self.tolerance(policy, slot):
            ctx.raise_(
                "mass_mismatch",
                f"{session.id}:{slot.container}",
                container=slot.container,
                session=session.id,
                amount_mg=taken,
                approved_mg=approval.max_mg,
            )

    def overdue(self, ctx: Step, container: str) -> None:
        slot = next((s for s in self.slots.values() if s.container == container), None)
        if slot is not None and not slot.present:
            ctx.raise_("overdue_return", container, container=container, slot=slot.slot)

    def snapshot(self) -> list[dict[str, Any]]:
        rows = []
        for n in sorted(self.slots):
            s = self.slots[n]
            gross = s.gross
            content = None if gross is None else max(gross - s.tare, 0) if s.container else gross
            rows.append(
                {
                    "slot": n,
                    "container": s.container,
                    "mass_mg": content,
                    "book_mg": s.book,
                    "gross_mg": gross,
                    "present": s.present,
                }
            )
        return rows

    def count(self, policy: Policy, slot_no: int) -> dict[str, Any]:
        """One slot of a stocktake: the settled content against the book."""
        slot = self.slots[slot_no]
        gross = slot.settled
        measured = None if gross is None else max(gross - slot.tare, 0)
        if not slot.present:  # out of its slot: the scale must read empty
            ok = gross is not None and self.is_empty(policy, slot, gross)
            diff = None
        else:
            diff = None if measured is None else measured - slot.book
            ok = diff is not None and abs(diff) <= self.tolerance(policy, slot)
        return {
            "slot": slot_no,
            "container": slot.container,
            "measured_mg": measured,
            "book_mg": slot.book,
            "diff_mg": diff,
            "ok": ok,
        }

    # --- durable state ------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return ledger_state.to_state(self)

    def restore(self, ctx: Step, state: dict[str, Any]) -> None:
        ledger_state.restore(self, ctx, state)

    # --- helpers -----------------------------------------------------------------------

    @staticmethod
    def tolerance(policy: Policy, slot: Slot) -> int:
        inv = policy.inventory
        return max(inv.tolerance_mg, slot.book * inv.tolerance_pct // 100)

    @staticmethod
    def is_empty(policy: Policy, slot: Slot, gross: int) -> bool:
        # The bottle alone weighs `tare`; below half of it (or the absolute tolerance
        # for very light bottles) the container is not on the scale.
        return gross <= max(policy.inventory.tolerance_mg, slot.tare // 2)

    def _check_unknown_item(self, ctx: Step, policy: Policy, slot: Slot) -> None:
        gross = slot.gross or 0
        if gross > policy.inventory.tolerance_mg:
            ctx.raise_("unknown_item", str(slot.slot), slot=slot.slot, measured_mg=gross)
        else:
            ctx.clear("unknown_item", str(slot.slot), slot=slot.slot)

    @staticmethod
    def _take(
        approvals: list[Approval], now: Instant, container: str, persons: tuple[str, ...]
    ) -> Approval | None:
        """Use up the first valid approval of `container` for a session of `persons`."""
        approvals[:] = [a for a in approvals if a.until_ms >= now.wall_ms]
        for approval in approvals:
            if approval.container == container and approval.persons <= set(persons):
                approvals.remove(approval)
                return approval
        return None
