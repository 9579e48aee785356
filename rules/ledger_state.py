"""The books as durable state (docs/rules.md, "The cabinet remembers"): the ledger's part
of what the core commits with the events that changed it, and its inverse at start.

Besides the books of the containers in the policy, the ledger keeps the last book of
each container a policy dropped (`retired`): the record decided that book, so a policy
that names the container again gets it back, not its `mass_mg`.
"""

from __future__ import annotations

from typing import Any, Protocol

from rules.books import Approval, Slot
from rules.step import Step
from rules.timers import Overdue


class Ledger(Protocol):
    """The MassLedger's state (rules/inventory.py)."""

    slots: dict[int, Slot]
    approvals: list[Approval]
    disposals: list[Approval]
    disposed: set[str]
    retired: dict[str, Slot]


def _book_row(s: Slot) -> dict[str, Any]:
    return {
        "slot": s.slot,
        "container": s.container,
        "tare_mg": s.tare,
        "book_mg": s.book,
        "present": s.present,
        "due_wall_ms": s.due_wall_ms,
        "expected_mg": s.expected,
    }


def _book(row: dict[str, Any]) -> Slot:
    slot = Slot(row["slot"], row["container"], row["tare_mg"], row["book_mg"])
    slot.present, slot.due_wall_ms = row["present"], row["due_wall_ms"]
    slot.expected = row.get("expected_mg")
    return slot


def to_state(ledger: Ledger) -> dict[str, Any]:
    return {
        "books": [_book_row(s) for _, s in sorted(ledger.slots.items()) if s.container],
        "retired": [_book_row(ledger.retired[c]) for c in sorted(ledger.retired)],
        "approvals": [
            {
                "container": a.container,
                "max_mg": a.max_mg,
                "persons": sorted(a.persons),
                "until_ms": a.until_ms,
                "nonce": a.nonce,
                "by": a.by,
                "purpose": a.purpose,
            }
            for a in ledger.approvals
        ],
        "disposals": [
            {
                "container": a.container,
                "persons": sorted(a.persons),
                "until_ms": a.until_ms,
                "nonce": a.nonce,
                "by": a.by,
                "purpose": a.purpose,
            }
            for a in ledger.disposals
        ],
        "disposed": sorted(ledger.disposed),
    }


def restore(ledger: Ledger, ctx: Step, state: dict[str, Any]) -> None:
    for row in state["books"]:
        slot = _book(row)
        ledger.slots[slot.slot] = slot
        if not slot.present and slot.due_wall_ms is not None:
            ctx.start(Overdue(slot.container or ""), slot.due_wall_ms - ctx.now.wall_ms)
    ledger.approvals = [
        Approval(
            a["container"],
            a["max_mg"],
            frozenset(a["persons"]),
            a["until_ms"],
            a["nonce"],
            a.get("by"),
            a.get("purpose"),
        )
        for a in state["approvals"]
    ]
    ledger.disposals = [
        Approval(
            a["container"],
            0,
            frozenset(a["persons"]),
            a["until_ms"],
            a["nonce"],
            a["by"],
            a["purpose"],
        )
        for a in state.get("disposals", [])
    ]
    ledger.disposed = set(state.get("disposed", []))
    ledger.retired = {row["container"]: _book(row) for row in state.get("retired", [])}
