"""The cabinet's durable state (DESIGN §4.7): what a restart must not forget.

`to_state` turns what the record has decided — the policy in force, the books, open
alarms, lockout and counted denials, unused approvals, an open session and the door's
last known level — into plain JSON data; the core commits it in the same transaction
as the events that changed it, so state and record never disagree after a power cut.
`restore` is the inverse, run by the rules at `Started`: deadlines travel as wall-clock
times (the monotonic clock restarts with the process) and their timers are re-armed.

Readings (scale candidates, VOC level, sensor freshness) are not state: the first
fresh readings after the start re-check every restored alarm against the world.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from config.policy import Policy
from rules.access import Grant
from rules.effects import Effect, Emit, Instant, StartTimer

if TYPE_CHECKING:
    from rules.cabinet import CabinetRules

FORMAT = 1  # bump when the shape changes; an unknown format is not guessed at


class StateError(ValueError):
    """The saved state cannot be read: the cabinet starts without it and says so."""


def to_state(rules: CabinetRules, now: Instant, *, with_policy: bool = True) -> dict[str, Any]:
    """The state as plain data; without the policy (`policy_state`) when the caller keeps
    that part apart: it is most of the bytes and changes a few times a year."""
    session = rules.session
    policy = {"policy": policy_state(rules.policy)} if with_policy else {}
    return {
        "format": FORMAT,
        **policy,
        "alarms": rules.alarms.to_state(),
        "access": rules.access.to_state(now),
        **rules.ledger.to_state(),
        "door_open": rules.door_open,
        "door_opened_wall_ms": rules.door_opened_wall_ms,
        "session": None
        if session is None
        else {
            "id": session.id,
            "persons": list(session.grant.persons),
            "readers": list(session.grant.readers),
            "mode": session.grant.mode,
            "approval": session.grant.approval,
            "phase": session.phase,
        },
    }


def policy_state(policy: Policy | None) -> dict[str, Any] | None:
    return None if policy is None else policy.model_dump(mode="json", by_alias=True)


def restore(rules: CabinetRules, out: list[Effect], now: Instant, state: dict[str, Any]) -> None:
    """Resume from `state`; raise StateError (nothing changed) if it cannot be read."""
    if state.get("format") != FORMAT:
        raise StateError(f"unknown state format {state.get('format')!r}")
    try:
        policy = None if state["policy"] is None else Policy.model_validate(state["policy"])
        session = state["session"]
        grant = None
        if session is not None:
            grant = Grant(
                (session["persons"][0], session["persons"][1]),
                tuple(session["readers"]),
                session["mode"],
                session["approval"],
            )
        rules.policy = policy
        rules.alarms.restore(state["alarms"])
        rules.access.restore(out, now, state["access"])
        rules.ledger.restore(out, now, state)
        rules.door_open = state["door_open"]
        rules.door_opened_wall_ms = state["door_opened_wall_ms"]
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"{type(exc).__name__}: {exc}") from None
    if session is not None and grant is not None:
        if session["phase"] == "unlocked":
            # The relay dropped with the power; the pair has to badge again.
            out.append(Emit("lock.locked", "info", {"session": session["id"], "reason": "restart"}))
        else:
            rules.resume_session(out, now, session["id"], grant, session["phase"])
    if rules.door_open and policy is not None and rules.door_opened_wall_ms is not None:
        due = rules.door_opened_wall_ms + policy.access.door_held_s * 1000
        out.append(StartTimer("door_held", now.mono_ms + due - now.wall_ms))
