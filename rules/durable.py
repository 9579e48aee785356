"""The cabinet's durable state: what a restart must not forget (docs/rules.md, "The cabinet
remembers").

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

from typing import Any, Protocol

from config.policy import Policy
from rules import tapout
from rules.access import AccessControl, Grant
from rules.alarms import AlarmBook
from rules.effects import Instant
from rules.environment import Environment
from rules.inventory import MassLedger
from rules.session import Phase, Session
from rules.step import Step
from rules.tapout import TapOut
from rules.timers import Timer

FORMAT = 1  # bump when the shape changes; an unknown format is not guessed at
# After a restart, restored alarms are re-checked once the sensors have reported (every
# ~1 s) and the scales had `settle_s` to settle: this many seconds beyond settle_s.
START_CHECK_S = 3


class Cabinet(Protocol):
    """The parts of the rules' state this module reads and resumes (CabinetRules)."""

    policy: Policy | None
    alarms: AlarmBook
    access: AccessControl
    ledger: MassLedger
    env: Environment
    session: Session | None
    door_open: bool | None
    door_opened_wall_ms: int | None
    tap_out: TapOut | None

    def resume_session(
        self, ctx: Step, session_id: str, grant: Grant, phase: Phase, opened: dict[int, int]
    ) -> None: ...

    def forget(self) -> None: ...


class StateError(ValueError):
    """The saved state cannot be read: the cabinet starts without it and says so."""


def to_state(rules: Cabinet, now: Instant, *, with_policy: bool = True) -> dict[str, Any]:
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
        "tap_out": None if rules.tap_out is None else rules.tap_out.to_state(),
        "session": None
        if session is None
        else {
            "id": session.id,
            "persons": list(session.grant.persons),
            "readers": list(session.grant.readers),
            "mode": session.grant.mode,
            "approval": session.grant.approval,
            "phase": session.phase.value,
            # JSON keys are strings: the slot numbers travel as text.
            "opened_gross": {str(n): mg for n, mg in session.view.opened_gross.items()},
        },
    }


def policy_state(policy: Policy | None) -> dict[str, Any] | None:
    return None if policy is None else policy.model_dump(mode="json", by_alias=True)


def resume(rules: Cabinet, ctx: Step, state: dict[str, Any]) -> None:
    """At start: restore `state`, or forget it all and say so if it cannot be read; then
    arm the timers that only exist after a restart."""
    mark = len(ctx.out)
    try:
        restore(rules, ctx, state)
    except StateError as exc:
        del ctx.out[mark:]
        rules.forget()
        ctx.policy, ctx.alarms = None, rules.alarms
        ctx.emit("system.warning", "warning", {"problem": "state_unreadable", "detail": str(exc)})
        return
    ctx.policy = rules.policy
    if rules.policy is not None:
        ctx.start(Timer.TELEMETRY, rules.policy.environment.reading_period_s * 1000)
        settle_s = max(rules.policy.inventory.settle_s, 1)
        ctx.start(Timer.START_CHECK, (settle_s + START_CHECK_S) * 1000)


def start_check(rules: Cabinet, ctx: Step) -> None:
    """The first fresh readings are in: alarms restored at start whose condition is gone
    are cleared (`condition_gone_at_start`); the rest stay open under their id."""
    policy, env = rules.policy, rules.env
    if rules.door_open is False:
        ctx.clear("door_forced")
        ctx.clear("door_held_open")
    if env.leak_wet is False:
        ctx.clear("leak")
    voc = env.voc_ppb
    if policy is not None and voc is not None and voc < policy.environment.voc_clear_ppb:
        ctx.clear("voc_high", voc_ppb=voc)
    if policy is not None and rules.session is None:
        for slot in sorted(rules.ledger.slots):
            rules.ledger.check_unattended(ctx, policy, slot)
    rules.alarms.end_start_check()


def restore(rules: Cabinet, ctx: Step, state: dict[str, Any]) -> None:
    """Resume from `state`; raise StateError (nothing changed) if it cannot be read."""
    if state.get("format") != FORMAT:
        raise StateError(f"unknown state format {state.get('format')!r}")
    try:
        policy = None if state["policy"] is None else Policy.model_validate(state["policy"])
        session = state["session"]
        grant, phase, opened = None, Phase.UNLOCKED, {}
        if session is not None:
            phase = Phase(session["phase"])
            opened = {int(n): int(mg) for n, mg in session.get("opened_gross", {}).items()}
            grant = Grant(
                (session["persons"][0], session["persons"][1]),
                tuple(session["readers"]),
                session["mode"],
                session["approval"],
            )
        rules.policy = policy
        rules.alarms.restore(state["alarms"])
        rules.access.restore(ctx, state["access"])
        rules.ledger.restore(ctx, state)
        rules.door_open = state["door_open"]
        rules.door_opened_wall_ms = state["door_opened_wall_ms"]
        rules.tap_out = tapout.restore(ctx, state.get("tap_out"))
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"{type(exc).__name__}: {exc}") from None
    if session is not None and grant is not None:
        if phase is Phase.UNLOCKED:
            # The relay dropped with the power; the pair has to badge again.
            ctx.emit("lock.locked", "info", {"session": session["id"], "reason": "restart"})
        else:
            rules.resume_session(ctx, session["id"], grant, phase, opened)
    if rules.door_open and policy is not None and rules.door_opened_wall_ms is not None:
        due = rules.door_opened_wall_ms + policy.access.door_held_s * 1000
        ctx.start(Timer.DOOR_HELD, due - ctx.now.wall_ms)
