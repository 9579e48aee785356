"""Commands from the centre and policy changes, once their signatures have been checked.

The downlink has already refused anything unsigned, expired, replayed or for another
device; here the rules decide what a valid command means in the cabinet's current state
(is that person pending, is that alarm open, is the policy newer) and record the answer
as `command.applied` / `command.rejected` / `policy.applied` / `policy.rejected`.
"""

from __future__ import annotations

from typing import Any, Protocol

from config.policy import Policy
from rules import discrepancy
from rules.access import APPROVER_ROLES, AccessControl, Grant
from rules.alarms import AlarmBook
from rules.books import Approval
from rules.command_args import (
    Ack,
    Approve,
    ApproveDisposal,
    ApproveWithdrawal,
    Resend,
    Resolve,
    Snapshot,
    Stocktake,
)
from rules.effects import Emit, PersistPolicy, Republish
from rules.inputs import CommandReceived, CommandRejected, PolicyLoaded
from rules.inventory import MassLedger
from rules.session import Session
from rules.step import Step
from rules.timers import Settle, Timer


class Cabinet(Protocol):
    """The parts of the rules' state a command may read or change (CabinetRules)."""

    device: str
    policy: Policy | None
    alarms: AlarmBook
    access: AccessControl
    ledger: MassLedger
    session: Session | None
    door_open: bool | None

    def grant(self, ctx: Step, grant: Grant) -> None: ...


def _applied_data(received: CommandReceived) -> dict[str, Any]:
    return {
        "name": received.name,
        "nonce": received.nonce,
        "reason": None,
        **received.command.record(),
    }


def _applied(ctx: Step, received: CommandReceived) -> None:
    ctx.emit("command.applied", "info", _applied_data(received))


def _refused(ctx: Step, name: str, nonce: str, reason: str, **extra: Any) -> None:
    data = {"name": name, "nonce": nonce, "reason": reason, **extra}
    if name == "policy":
        # A policy refused before it could be read has no version to name.
        ctx.emit("policy.rejected", "warning", {"version": None, **data})
    else:
        ctx.emit("command.rejected", "warning", data)


def rejected(ctx: Step, r: CommandRejected) -> None:
    _refused(ctx, r.name, r.nonce, r.reason, **r.named)


def handle(rules: Cabinet, ctx: Step, received: CommandReceived) -> None:
    command, nonce = received.command, received.nonce
    if isinstance(command, Approve):
        _approve(rules, ctx, command, nonce)
    elif isinstance(command, ApproveWithdrawal):
        _approval(rules, ctx, received, command, command.max_mg, rules.ledger.approvals)
    elif isinstance(command, ApproveDisposal):
        _approval(rules, ctx, received, command, 0, rules.ledger.disposals)
    elif isinstance(command, Ack):
        _ack(rules, ctx, command, nonce)
    elif isinstance(command, Resolve):
        settlement = discrepancy.check(ctx, rules.ledger, command)
        if isinstance(settlement, str):
            _refused(ctx, command.NAME, nonce, settlement, **command.record())
            return
        assert rules.policy is not None
        _applied(ctx, received)
        discrepancy.settle(ctx, rules.policy, rules.ledger, command, settlement)
    elif isinstance(command, Stocktake):
        if rules.session is not None or bool(rules.door_open):
            _refused(ctx, command.NAME, nonce, "door_open", **command.record())
            return
        mark = len(ctx.out)
        refusal = discrepancy.stocktake(ctx, rules.ledger, command.persons)
        if refusal is not None:
            _refused(ctx, command.NAME, nonce, refusal, **command.record())
            return
        ctx.out.insert(mark, Emit("command.applied", "info", _applied_data(received)))
    elif isinstance(command, Snapshot):
        ctx.emit("inventory.snapshot", "info", {"slots": rules.ledger.snapshot()})
        _applied(ctx, received)
    elif isinstance(command, Resend):
        _applied(ctx, received)
        ctx.out.append(Republish(command.from_seq, command.to_seq))


def _approval(
    rules: Cabinet,
    ctx: Step,
    received: CommandReceived,
    command: ApproveWithdrawal | ApproveDisposal,
    max_mg: int,
    into: list[Approval],
) -> None:
    """Keep an approval for a later session of its persons (a withdrawal's amount, or a
    disposal: max_mg 0), once its container and people check out."""
    policy, nonce = rules.policy, received.nonce
    if policy is None or policy.container_by_id(command.container) is None:
        _refused(ctx, command.NAME, nonce, "unknown_container", **command.record())
        return
    refusal = _people(ctx, command.persons, command.by)
    if refusal is not None:
        _refused(ctx, command.NAME, nonce, refusal, **command.record())
        return
    persons = frozenset(command.persons)
    into.append(
        Approval(
            command.container, max_mg, persons, command.until_ms, nonce, command.by, command.purpose
        )
    )
    _applied(ctx, received)


def _people(ctx: Step, persons: list[str], by: str) -> str | None:
    """Everyone a command names is a person of the policy in force, valid now; `by`, who
    approves, also holds keeper or safety_officer. The refusal reason, or None."""
    assert ctx.policy is not None
    for person_id in [*persons, by]:
        person = ctx.policy.person_by_id(person_id)
        if person is None:
            return "unknown_person"
        if not person.valid_at(ctx.now.wall_ms):
            return "not_authorized"
    approver = ctx.policy.person_by_id(by)
    if approver is not None and not APPROVER_ROLES & set(approver.roles):
        return "role_requirement"
    return None


def _approve(rules: Cabinet, ctx: Step, command: Approve, nonce: str) -> None:
    if rules.session is not None or bool(rules.door_open):
        _refused(ctx, command.NAME, nonce, "door_open", **command.record())
        return
    result = rules.access.approve_remote(ctx, command.person, nonce, command.by)
    if isinstance(result, str):
        _refused(ctx, command.NAME, nonce, result, **command.record())
        return
    _applied(ctx, CommandReceived(command, nonce))
    rules.grant(ctx, result)


def _ack(rules: Cabinet, ctx: Step, command: Ack, nonce: str) -> None:
    person = rules.policy.person_by_id(command.by) if rules.policy else None
    if person is None or not person.valid_at(ctx.now.wall_ms):
        reason = "unknown_person" if person is None else "not_authorized"
        _refused(ctx, command.NAME, nonce, reason, **command.record())
        return
    if rules.alarms.find(command.alarm) is None:
        _refused(ctx, command.NAME, nonce, "unknown_alarm", **command.record())
        return
    _applied(ctx, CommandReceived(command, nonce))
    rules.alarms.ack(ctx.out, command.alarm, command.by, command.comment)


def load_policy(rules: Cabinet, ctx: Step, loaded: PolicyLoaded) -> None:
    policy = loaded.policy
    current = rules.policy
    base = {
        "name": "policy",
        "nonce": loaded.nonce,
        "version": policy.version,
        "source": loaded.source,
    }
    if not policy.applies_to(rules.device):
        data = {**base, "reason": "wrong_cabinet", "cabinet": policy.cabinet}
        ctx.emit("policy.rejected", "warning", data)
        return
    if current is not None and policy.version == current.version and loaded.source == "startup":
        return  # the persisted copy of the policy the restored state already enforces
    if current is not None and policy.version <= current.version:
        data = {**base, "reason": "version_not_newer", "current_version": current.version}
        ctx.emit("policy.rejected", "warning", data)
        return
    first = current is None
    rules.policy = ctx.policy = policy
    rules.ledger.load(policy)
    rules.access.policy_changed(ctx)
    ctx.emit("policy.applied", "info", {**base, "reason": None})
    if rules.session is None:
        # An unknown item on a slot this policy gives a container: judge it against
        # that container's books now (it clears if they match).
        for slot_no, held in sorted(rules.ledger.slots.items()):
            if held.container is not None and rules.alarms.is_open("unknown_item", str(slot_no)):
                rules.ledger.check_unattended(ctx, policy, slot_no)
    if loaded.document is not None and loaded.source == "command":
        ctx.out.append(PersistPolicy(loaded.document, policy.version))
    if first:
        ctx.start(Timer.TELEMETRY, policy.environment.reading_period_s * 1000)
        # Readings that arrived before any policy could not be judged: settle them now.
        for slot in sorted(rules.ledger.slots):
            if rules.ledger.slots[slot].candidate is not None:
                rules.ledger.slots[slot].since_mono = ctx.now.mono_ms
                ctx.start(Settle(slot), policy.inventory.settle_s * 1000)
