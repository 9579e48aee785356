"""A container's arrival (双人收) and its departure for good (处置), both by two persons.

Receiving: a container added to the policy for a slot that is empty is *incoming*; its
`mass_mg` is the delivery note. When a session's two persons put it in its slot, the
book starts at the measured content (`inventory.received`); a difference from the
note beyond tolerance is also `mass_mismatch`. Disposal: under an `approve_disposal` the
container leaving its slot is `inventory.disposed` with its last book, never overdue.
"""

from __future__ import annotations

from typing import Any

from rules.books import Approval, Slot
from rules.step import Step


def receive(
    ctx: Step, slot: Slot, common: dict[str, Any], cas: str, gross: int, tolerance: int
) -> None:
    expected = slot.expected or 0
    measured = max(gross - slot.tare, 0)
    slot.present, slot.book, slot.expected = True, measured, None
    data = {
        **common,
        "cas": cas,
        "expected_mg": expected,
        "measured_mg": measured,
        "book_mg": measured,
    }
    ctx.emit("inventory.received", "info", data)
    if abs(measured - expected) > tolerance:
        ctx.raise_(
            "mass_mismatch",
            f"received:{slot.container}",
            container=slot.container,
            slot=slot.slot,
            session=common["session"],
            expected_mg=expected,
            measured_mg=measured,
        )


def dispose(ctx: Step, slot: Slot, common: dict[str, Any], cas: str, disposal: Approval) -> None:
    data = {
        **common,
        "cas": cas,
        "book_mg": slot.book,
        "approval": {"nonce": disposal.nonce, "by": disposal.by},
        "purpose": disposal.purpose,
    }
    ctx.emit("inventory.disposed", "info", data)
    slot.container, slot.tare, slot.book, slot.present = None, 0, 0, False
