"""A granted session's life, as one table of allowed phase changes.

    UNLOCKED --door opens--> OPEN --door closes--> SETTLING --reconciled--> ENDED
    UNLOCKED --unlock window passes / agent stops / restart--> ENDED

UNLOCKED: granted, relay energised, the door not yet opened (nothing touched yet).
OPEN: the door is open, people at the shelves. SETTLING: the door closed; the weights
are settling before the session's changes are booked to its two persons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from rules.access import Grant
from rules.alarms import AlarmBook
from rules.books import Slot
from rules.inventory import SessionView


class Phase(Enum):
    UNLOCKED = "unlocked"
    OPEN = "open"
    SETTLING = "settling"
    ENDED = "ended"


TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.UNLOCKED: frozenset({Phase.OPEN, Phase.ENDED}),
    Phase.OPEN: frozenset({Phase.SETTLING}),
    Phase.SETTLING: frozenset({Phase.ENDED}),
    Phase.ENDED: frozenset(),
}


class PhaseError(RuntimeError):
    """A phase change the table does not allow: a bug in the rules, never input."""


@dataclass
class Session:
    id: str
    grant: Grant
    phase: Phase = Phase.UNLOCKED
    waits: int = 0  # settle periods waited for moving scales after the door closed
    view: SessionView = field(init=False)

    def __post_init__(self) -> None:
        self.view = SessionView(self.id, self.grant.persons)

    def to(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise PhaseError(f"session {self.id}: {self.phase.value} -> {phase.value}")
        self.phase = phase


def opened_gross(slots: dict[int, Slot], alarms: AlarmBook) -> dict[int, int]:
    """At door-open: the weight of each slot with an open discrepancy (mass_unexplained),
    the baseline of what the session changes there (the books are not, they are off)."""
    levels: dict[int, int] = {}
    for n, slot in slots.items():
        level = slot.candidate if slot.candidate is not None else slot.settled
        if level is not None and alarms.is_open("mass_unexplained", str(n)):
            levels[n] = level
    return levels
