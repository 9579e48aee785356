"""Commands from the centre and policy changes, once their signatures have been checked.

The downlink has already refused anything unsigned, expired, replayed or for another
device; here the rules decide what a valid command means in the cabinet's current state
(is that person pending, is that alarm open, is the policy newer) and record the answer
as `command.applied` / `command.rejected` / `policy.applied` / `policy.rejected`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rules.effects import Effect, Emit, Instant, PersistPolicy, Republish, StartTimer
from rules.inputs import CommandReceived, CommandRejected, PolicyLoaded
from rules.inventory import Approval

if TYPE_CHECKING:
    from rules.cabinet import CabinetRules


def _applied(out: list[Effect], cmd: CommandReceived, **extra: Any) -> None:
    data = {"name": cmd.name, "nonce": cmd.nonce, "reason": None, **extra}
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


def _int(args: dict[str, Any], key: str) -> int:
    value = args.get(key)
    if type(value) is not int:
        raise ValueError(key)
    return value


def _str(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(key)
    return value


def handle(rules: CabinetRules, out: list[Effect], now: Instant, cmd: CommandReceived) -> None:
    try:
        _dispatch(rules, out, now, cmd)
    except ValueError as exc:
        _refused(out, cmd.name, cmd.nonce, "bad_args", detail=str(exc))


def _dispatch(rules: CabinetRules, out: list[Effect], now: Instant, cmd: CommandReceived) -> None:
    args = cmd.args if isinstance(cmd.args, dict) else {}
    if cmd.name == "approve":
        person, by = _str(args, "person"), _str(args, "by")
        busy = rules.session is not None or bool(rules.door_open)
        if busy:
            _refused(out, cmd.name, cmd.nonce, "door_open", person=person, by=by)
            return
        result = rules.access.approve_remote(out, now, rules.policy, person, cmd.nonce, by)
        if isinstance(result, str):
            _refused(out, cmd.name, cmd.nonce, result, person=person, by=by)
            return
        _applied(out, cmd, person=person, by=by)
        rules.grant(out, now, result)
    elif cmd.name == "approve_withdrawal":
        container = _str(args, "container")
        max_mg, until_ms = _int(args, "max_mg"), _int(args, "until_ms")
        persons = args.get("persons")
        if (
            not isinstance(persons, list)
            or not persons
            or not all(isinstance(p, str) for p in persons)
        ):
            raise ValueError("persons")
        if max_mg < 0:
            raise ValueError("max_mg")
        if rules.policy is None or rules.policy.container_by_id(container) is None:
            _refused(out, cmd.name, cmd.nonce, "unknown_container", container=container)
            return
        rules.ledger.approve(Approval(container, max_mg, frozenset(persons), until_ms, cmd.nonce))
        _applied(
            out, cmd, container=container, max_mg=max_mg, persons=sorted(persons), until_ms=until_ms
        )
    elif cmd.name == "ack":
        _ack(rules, out, now, cmd, args)
    elif cmd.name == "snapshot":
        out.append(Emit("inventory.snapshot", "info", {"slots": rules.ledger.snapshot()}))
        _applied(out, cmd)
    elif cmd.name == "resend":
        lo, hi = _int(args, "from_seq"), _int(args, "to_seq")
        if not 1 <= lo <= hi:
            raise ValueError("from_seq..to_seq")
        _applied(out, cmd, from_seq=lo, to_seq=hi)
        out.append(Republish(lo, hi))
    else:
        _refused(out, cmd.name, cmd.nonce, "unknown_command")


def _ack(
    rules: CabinetRules, out: list[Effect], now: Instant, cmd: CommandReceived, args: dict[str, Any]
) -> None:
    alarm = _str(args, "alarm")
    by = args.get("by")
    comment = args.get("comment")
    if (by is not None and not isinstance(by, str)) or (
        comment is not None and not isinstance(comment, str)
    ):
        raise ValueError("by/comment")
    record = {"alarm": alarm, "by": by, "comment": comment}
    if by is not None:
        person = rules.policy.person_by_id(by) if rules.policy else None
        if person is None or not person.valid_at(now.wall_ms):
            reason = "unknown_person" if person is None else "not_authorized"
            _refused(out, cmd.name, cmd.nonce, reason, **record)
            return
    if rules.alarms.find(alarm) is None:
        _refused(out, cmd.name, cmd.nonce, "unknown_alarm", **record)
        return
    _applied(out, cmd, **record)
    rules.alarms.ack(out, alarm, by, comment)


def load_policy(rules: CabinetRules, out: list[Effect], now: Instant, loaded: PolicyLoaded) -> None:
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
        out.append(StartTimer("telemetry", now.mono_ms + period))
        # Readings that arrived before any policy could not be judged: settle them now.
        for slot in sorted(rules.ledger.slots):
            if rules.ledger.slots[slot].candidate is not None:
                rules.ledger.slots[slot].since_mono = now.mono_ms
                out.append(
                    StartTimer(f"settle:{slot}", now.mono_ms + policy.inventory.settle_s * 1000)
                )
