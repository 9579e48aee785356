"""The books' value types: a slot and what the ledger knows of its container, and an
approval waiting for its session. Shared by the ledger and the rules that move it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Slot:
    slot: int
    container: str | None
    tare: int = 0
    book: int = 0  # content on the books, mg
    present: bool = True  # the container is in its slot as far as the books know
    due_wall_ms: int | None = None  # return deadline while it is out of its slot
    expected: int | None = None  # incoming: the delivery note's content, not yet received
    candidate: int | None = None  # latest reading that moved beyond tolerance
    since_mono: int = 0
    settled: int | None = None  # gross weight that held still for settle_s

    @property
    def gross(self) -> int | None:
        return self.settled if self.settled is not None else self.candidate


@dataclass(frozen=True)
class Approval:
    container: str
    max_mg: int
    persons: frozenset[str]
    until_ms: int
    nonce: str
    by: str | None = None  # who approved (keeper or safety officer)
    purpose: str | None = None  # what the content is for (用途)
