"""Tap-out (双人在场): with `tap_out_s` > 0, after the door closes both persons of the
session badge again within `tap_out_s`, so the record shows who was there at the end.

`access.closed` says who did (`persons_out`) and whether both did (`complete`); if not,
`two_person_breach`. A tap-out badge is only that: it never starts a new session. In a
remote session only the person at the cabinet can badge out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from config.policy import Policy
from rules.session import Session
from rules.step import Step
from rules.timers import Timer


@dataclass
class TapOut:
    session: str
    persons: list[str]  # who must badge out
    due_wall_ms: int
    out: list[str] = field(default_factory=list)

    def to_state(self) -> dict[str, Any]:
        return asdict(self)


def begin(ctx: Step, policy: Policy, session: Session) -> TapOut | None:
    tap_out_s = policy.access.tap_out_s
    if tap_out_s <= 0:
        return None
    grant = session.grant
    persons = list(grant.persons if grant.mode == "local" else grant.persons[:1])
    ctx.start(Timer.TAP_OUT, tap_out_s * 1000)
    return TapOut(session.id, persons, ctx.now.wall_ms + tap_out_s * 1000)


def badge(ctx: Step, tap: TapOut, person: str, reader: str) -> tuple[bool, bool]:
    """(is this badge a tap-out, is the tap-out now complete)."""
    if person not in tap.persons:
        return False, False
    if person not in tap.out:
        tap.out.append(person)
        data = {"session": tap.session, "person": person, "reader": reader}
        ctx.emit("access.tapped_out", "info", data)
    if set(tap.out) == set(tap.persons):
        ctx.cancel(Timer.TAP_OUT)
        _closed(ctx, tap, complete=True)
        return True, True
    return True, False


def expired(ctx: Step, tap: TapOut) -> None:
    _closed(ctx, tap, complete=False)
    missing = [p for p in tap.persons if p not in tap.out]
    ctx.raise_(
        "two_person_breach", tap.session, session=tap.session, persons_out=tap.out, missing=missing
    )


def restore(ctx: Step, state: dict[str, Any] | None) -> TapOut | None:
    if state is None:
        return None
    tap = TapOut(state["session"], list(state["persons"]), state["due_wall_ms"], list(state["out"]))
    ctx.start(Timer.TAP_OUT, tap.due_wall_ms - ctx.now.wall_ms)
    return tap


def _closed(ctx: Step, tap: TapOut, *, complete: bool) -> None:
    data = {"session": tap.session, "persons_out": list(tap.out), "complete": complete}
    ctx.emit("access.closed", "info", data)
