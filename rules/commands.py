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
from rules.access import AccessControl, Grant
from rules.alarms import AlarmBook
from rules.command_args import Ack, Approve, ApproveWithdrawal, Resend, Resolve, Snapshot
from rules.effects import Effect, Emit, Instant, PersistPolicy, Republish, StartTimer
from rules.inputs import CommandReceived, CommandRejected, PolicyLoaded
from rules.inventory import Approval, MassLedger
from rules.session import Session
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

    def grant(self, out: list[Effect], now: Instant, grant: Grant) -> None: ...


def _applied(out: list[Effect], received: CommandReceived) -> None:
    data = {
        "name": received.name,
        "nonce": received.nonce,
        "reason": None,
        **received.command.record(),
    }
    out.append(Emit("command.applied", "info", data))


def _refused(out: list[Effect], name: str, nonce: str, reason: str, **extra: Any) -> None:
    if name == "policy":
        # A policy refused before it could be read has no version to name.
        out.append(
            Emit(
                "policy.rejected",
                "warning",
                {"name": name, "nonce": nonce, "version": None, "reason": reason, **extra},
            )
        )
        return
    out.append(
        Emit(
            "command.rejected", "warning", {"name": name, "nonce": nonce, "reason": reason, **extra}
        )
    )


def rejected(out: list[Effect], r: CommandRejected) -> None:
    _refused(out, r.name, r.nonce, r.reason)


def handle(rules: Cabinet, out: list[Effect], now: Instant, received: CommandReceived) -> None:
    command, nonce = received.command, received.nonce
    if isinstance(command, Approve):
        _approve(rules, out, now, command, nonce)
    elif isinstance(command, ApproveWithdrawal):
        policy = rules.policy
        if policy is None or policy.container_by_id(command.container) is None:
            _refused(out, command.NAME, nonce, "unknown_container", **command.record())
            return
        approval = Approval(
            command.container,
            command.max_mg,
            frozenset(command.persons),
            command.until_ms,
            nonce,
        )
        rules.ledger.approve(approval)
        _applied(out, received)
    elif isinstance(command, Ack):
        _ack(rules, out, now, command, nonce)
    elif isinstance(command, Resolve):
        settlement = discrepancy.check(now, rules.policy, rules.alarms, rules.ledger, command)
        if isinstance(settlement, str):
            _refused(out, command.NAME, nonce, settlement, **command.record())
            return
        assert rules.policy is not None
        _applied(out, received)
        discrepancy.settle(out, now, rules.policy, rules.alarms, rules.ledger, command, settlement)
    elif isinstance(command, Snapshot):
        out.append(Emit("inventory.snapshot", "info", {"slots": rules.ledger.snapshot()}))
        _applied(out, received)
    elif isinstance(command, Resend):
        _applied(out, received)
        out.append(Republish(command.from_seq, command.to_seq))


def _approve(rules: Cabinet, out: list[Effect], now: Instant, command: Approve, nonce: str) -> None:
    if rules.session is not None or bool(rules.door_open):
        _refused(out, command.NAME, nonce, "door_open", **command.record())
        return
    result = rules.access.approve_remote(out, now, rules.policy, command.person, nonce, command.by)
    if isinstance(result, str):
        _refused(out, command.NAME, nonce, result, **command.record())
        return
    _applied(out, CommandReceived(command, nonce))
    rules.grant(out, now, result)


def _ack(rules: Cabinet, out: list[Effect], now: Instant, command: Ack, nonce: str) -> None:
    if command.by is not None:
        person = rules.policy.person_by_id(command.by) if rules.policy else None
        if person is None or not person.valid_at(now.wall_ms):
            reason = "unknown_person" if person is None else "not_authorized"
            _refused(out, command.NAME, nonce, reason, **command.record())
            return
    if rules.alarms.find(command.alarm) is None:
        _refused(out, command.NAME, nonce, "unknown_alarm", **command.record())
        return
    _applied(out, CommandReceived(command, nonce))
    rules.alarms.ack(out, command.alarm, command.by, command.comment)


def load_policy(rules: Cabinet, out: list[Effect], now: Instant, loaded: PolicyLoaded) -> None:
    policy = loaded.policy
    current = rules.policy
    base = {
        "name": "policy",
        "nonce": loaded.nonce,
        "version": policy.version,
        "source": loaded.source,
    }
    if not policy.applies_to(rules.device):
        out.append(
            Emit(
                "policy.rejected",
                "warning",
                {**base, "reason": "wrong_cabinet", "cabinet": policy.cabinet},
            )
        )
        return
    if current is not None and policy.version == current.version and loaded.source == "startup":
        return  # the persisted copy of the policy the restored state already enforces
    if current is not None and policy.version <= current.version:
        out.append(
            Emit(
                "policy.rejected",
                "warning",
                {**base, "reason": "version_not_newer", "current_version": current.version},
            )
        )
        return
    first = current is None
    rules.policy = policy
    rules.ledger.load(policy)
    rules.access.policy_changed(out, policy)
    out.append(Emit("policy.applied", "info", {**base, "reason": None}))
    if loaded.document is not None and loaded.source == "command":
        out.append(PersistPolicy(loaded.document, policy.version))
    if first:
        period = policy.environment.reading_period_s * 1000
        out.append(StartTimer(Timer.TELEMETRY, now.mono_ms + period))
        # Readings that arrived before any policy could not be judged: settle them now.
        for slot in sorted(rules.ledger.slots):
            if rules.ledger.slots[slot].candidate is not None:
                rules.ledger.slots[slot].since_mono = now.mono_ms
                out.append(StartTimer(Settle(slot), now.mono_ms + policy.inventory.settle_s * 1000))
