"""The `cabinetctl` commands that talk to cabinets through the broker.

policy push, approve, approve-withdrawal, ack, snapshot and resend each send one signed
command and wait for the cabinet's verified answer (exit 0 applied, 3 rejected, 1 no
answer). Attached to the main group by central.cli (`watch` is central.watch_cli).
"""

from __future__ import annotations

import queue
import sys
import time
from pathlib import Path
from typing import Any

import click

from central.commands import DEFAULT_TTL_S, MAX_TTL_S, AnswerWatch, IssuedCommand, issue
from central.errors import EX_REJECTED, CentralError
from central.mqtt import BrokerConnection
from central.options import (
    EXISTING,
    broker_from,
    broker_options,
    central_key,
    key_option,
)
from central.options import registry_option as registry_opt
from central.policy_tools import load_policy_quietly, load_signed_policy
from central.registry import load_registry, registry_path
from central.timefmt import duration_s, grams_to_mg, utc_text
from rules.command_args import RESOLVE_REASONS


def now_ms() -> int:
    return int(time.time() * 1000)


def command_options(func: Any) -> Any:
    func = click.option(
        "--ttl", default=f"{DEFAULT_TTL_S}s", show_default=True, help="command expires after"
    )(func)
    func = click.option(
        "--timeout", default="30s", show_default=True, help="how long to wait for the answer"
    )(func)
    func = click.option("--device", "device_id", required=True, help="cabinet id")(func)
    return broker_options(key_option("required")(registry_opt(func)))


def send_and_wait(params: dict[str, Any], name: str, args: dict[str, Any]) -> None:
    """Sign, publish, wait for the verified answer, print it; exit by its verdict."""
    known = load_registry(registry_path(params.pop("registry")))
    device = known.get(params.pop("device_id"))
    key = central_key(params.pop("key"))
    ttl = duration_s(params.pop("ttl"), "--ttl")
    if ttl > MAX_TTL_S:
        # The agent refuses longer-lived commands (validity_too_long): say so here.
        raise CentralError(
            f"--ttl is at most {MAX_TTL_S // 86400} days (the cabinet refuses longer)"
        )
    timeout = duration_s(params.pop("timeout"), "--timeout")
    prefix = params.pop("prefix")
    options = broker_from(params)
    with BrokerConnection(options) as conn:
        issued = issue(device, name, args, key, now_ms=now_ms(), ttl_s=ttl, prefix=prefix)
        conn.subscribe(list(issued.answer_topics))  # before publishing: no race
        conn.publish(issued.topic, issued.payload)
        click.echo(f"sent {name} to {device.id} (nonce {issued.nonce}); waiting...", err=True)
        answer = _wait_answer(conn, issued, timeout)
    click.echo(f"{device.id}: {name} {answer.describe()}")
    if not answer.applied:
        sys.exit(EX_REJECTED)


def _wait_answer(conn: BrokerConnection, issued: IssuedCommand, timeout_s: int) -> Any:
    watch = AnswerWatch(issued)
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = conn.messages.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        answer = watch.feed(message.topic, message.payload)
        while watch.forgeries:
            click.echo(f"WARNING: {watch.forgeries.pop(0)}", err=True)
        if answer is not None:
            return answer
    expires = utc_text(int(issued.document["expires_at_ms"]))
    raise CentralError(
        f"no verified answer from {issued.device.id} within {timeout_s} s "
        f"(nonce {issued.nonce}); the command stays valid until {expires} and may "
        "still be applied if the cabinet receives it before then"
    )


# --- policy push ---------------------------------------------------------------------------


@click.command("push")
@click.argument("signed", type=EXISTING)
@command_options
def policy_push(signed: Path, **params: Any) -> None:
    """Send a signed policy (from `policy sign`) to one cabinet and wait for its verdict."""
    key = central_key(params["key"])
    document, policy = load_signed_policy(signed, key.public)
    if not policy.applies_to(params["device_id"]):
        raise CentralError(
            f"{signed} is for cabinet {policy.cabinet!r}, not {params['device_id']!r}"
        )
    click.echo(f"policy version {policy.version} for {policy.cabinet}", err=True)
    send_and_wait(params, "policy", {"policy": document})


# --- remote commands ------------------------------------------------------------------------


@click.command()
@click.option("--person", required=True, help="id of the person waiting at the cabinet")
@click.option(
    "--by", required=True, help="policy person id of the approver (keeper or safety officer)"
)
@click.option("--policy", "policy_file", type=EXISTING, help="check both ids against this policy")
@command_options
def approve(person: str, by: str, policy_file: Path | None, **params: Any) -> None:
    """Stand in remotely as the second person for PERSON's pending badge."""
    # The cabinet holds `by` to what a second badge would be (a valid person of its
    # policy, keeper or safety officer, pairing with PERSON): say so here, before sending.
    rules = load_policy_quietly(policy_file)
    if rules is not None:
        approver = rules.person_by_id(by)
        if approver is None:
            ids = ", ".join(
                p.id for p in rules.person if {"keeper", "safety_officer"} & set(p.roles)
            )
            raise CentralError(
                f"--by {by!r} is not a person id in {policy_file}; approvers there: {ids}"
            )
        if rules.person_by_id(person) is None:
            raise CentralError(f"--person {person!r} is not a person id in {policy_file}")
        if by == person:
            raise CentralError("--by must be another person than --person (two persons)")
        if not {"keeper", "safety_officer"} & set(approver.roles):
            raise CentralError(f"--by {by!r} is neither keeper nor safety_officer")
        if not approver.valid_at(now_ms()):
            raise CentralError(f"--by {by!r} is suspended or outside their validity dates")
    send_and_wait(params, "approve", {"person": person, "by": by})


def approval_options(func: Any) -> Any:
    """What approve-withdrawal and approve-disposal both name: container, persons, by."""
    for option in (
        click.option("--policy", "policy_file", type=EXISTING, help="check ids against it"),
        click.option("--by", required=True, help="policy person id of the approver"),
        click.option("--person", "persons", multiple=True, required=True, help="each person"),
        click.option("--container", required=True, help="container id"),
    ):
        func = option(func)
    return command_options(func)


@click.command("approve-withdrawal")
@click.option("--max-grams", required=True, help="most content that may be taken, e.g. 25.5")
@click.option("--valid-for", default="2h", show_default=True, help="approval window")
@click.option("--purpose", required=True, help="what the content is for (用途), recorded")
@approval_options
def approve_withdrawal(max_grams: str, **options: Any) -> None:
    """Approve an amount of a container for a later session of these persons."""
    max_mg = grams_to_mg(max_grams, "--max-grams")
    _send_approval("approve_withdrawal", options, max_mg=max_mg)


@click.command("approve-disposal")
@click.option("--valid-for", default="8h", show_default=True, help="approval window")
@click.option("--purpose", required=True, help="why it leaves for good (recorded)")
@approval_options
def approve_disposal(**options: Any) -> None:
    """Let a container leave for good (处置) in a later session of these persons."""
    _send_approval("approve_disposal", options)


def _send_approval(name: str, options: dict[str, Any], **extra: int) -> None:
    container, persons, by = options.pop("container"), options.pop("persons"), options.pop("by")
    until = now_ms() + duration_s(options.pop("valid_for"), "--valid-for") * 1000
    _check_approval(options.pop("policy_file"), container, persons, by)
    args = {
        "container": container,
        **extra,
        "persons": list(persons),
        "until_ms": until,
        "by": by,
        "purpose": options.pop("purpose"),
    }
    send_and_wait(options, name, args)


def _check_approval(
    policy_file: Path | None, container: str, persons: tuple[str, ...], by: str
) -> None:
    """With a policy: the container and every person exist; `by` may approve."""
    rules = load_policy_quietly(policy_file)
    if rules is None:
        return
    if rules.container_by_id(container) is None:
        raise CentralError(f"container {container!r} is not in {policy_file}")
    unknown = [p for p in (*persons, by) if rules.person_by_id(p) is None]
    if unknown:
        raise CentralError(f"not in {policy_file}: {', '.join(unknown)}")
    approver = rules.person_by_id(by)
    if approver is not None and not {"keeper", "safety_officer"} & set(approver.roles):
        raise CentralError(f"--by {by!r} is neither keeper nor safety_officer")


@click.command()
@click.argument("alarm_id")
@click.option("--by", required=True, help="policy person id of who acknowledges (recorded)")
@click.option("--comment", help="what was done or seen (recorded)")
@command_options
def ack(alarm_id: str, by: str, comment: str | None, **params: Any) -> None:
    """Acknowledge ALARM_ID: buzzer off; it stays open until its condition is gone (a
    discrepancy of the books until it is resolved)."""
    args: dict[str, Any] = {"alarm": alarm_id, "by": by}
    if comment is not None:
        args["comment"] = comment
    send_and_wait(params, "ack", args)


@click.command()
@click.argument("alarm_id")
@click.option("--reason", required=True, type=click.Choice(RESOLVE_REASONS), help="reason code")
@click.option("--person", "persons", multiple=True, required=True, help="twice: the two persons")
@click.option("--comment", help="what was found (required with --reason other)")
@click.option("--policy", "policy_file", type=EXISTING, help="check both ids against this policy")
@command_options
def resolve(
    alarm_id: str,
    reason: str,
    persons: tuple[str, ...],
    comment: str | None,
    policy_file: Path | None,
    **params: Any,
) -> None:
    """Resolve the discrepancy ALARM_ID: two keepers or safety officers set the book to
    the settled measured content (inventory.adjusted), then the alarm clears."""
    if reason == "other" and not comment:
        raise CentralError("--reason other needs a --comment saying what happened")
    _two_signers(persons, policy_file)
    args: dict[str, Any] = {"alarm": alarm_id, "reason": reason, "persons": list(persons)}
    if comment is not None:
        args["comment"] = comment
    send_and_wait(params, "resolve", args)


@click.command()
@click.option("--person", "persons", multiple=True, required=True, help="twice: the two persons")
@click.option("--policy", "policy_file", type=EXISTING, help="check both ids against this policy")
@command_options
def stocktake(persons: tuple[str, ...], policy_file: Path | None, **params: Any) -> None:
    """Two keepers or safety officers attest the stock now (inventory.stocktake)."""
    _two_signers(persons, policy_file)
    send_and_wait(params, "stocktake", {"persons": list(persons)})


def _two_signers(persons: tuple[str, ...], policy_file: Path | None) -> None:
    """Two different persons, keepers or safety officers of the policy (when given)."""
    if len(persons) != 2 or persons[0] == persons[1]:
        raise CentralError("--person must name two different persons (双人记账)")
    rules = load_policy_quietly(policy_file)
    if rules is None:
        return
    for person_id in persons:
        person = rules.person_by_id(person_id)
        if person is None:
            raise CentralError(f"--person {person_id!r} is not a person id in {policy_file}")
        if not {"keeper", "safety_officer"} & set(person.roles):
            raise CentralError(f"--person {person_id!r} is neither keeper nor safety_officer")


@click.command()
@command_options
def snapshot(**params: Any) -> None:
    """Ask the cabinet for an inventory.snapshot now."""
    send_and_wait(params, "snapshot", {})


@click.command()
@click.argument("from_seq", type=click.IntRange(min=1))
@click.argument("to_seq", type=click.IntRange(min=1))
@command_options
def resend(from_seq: int, to_seq: int, **params: Any) -> None:
    """Ask the cabinet to publish FROM_SEQ..TO_SEQ of its outbox again."""
    if to_seq < from_seq:
        raise CentralError(f"empty range {from_seq}..{to_seq}")
    send_and_wait(params, "resend", {"from_seq": from_seq, "to_seq": to_seq})


def attach_remote_commands(cli: click.Group, policy: click.Group) -> None:
    policy.add_command(policy_push)
    commands = (
        approve,
        approve_withdrawal,
        approve_disposal,
        ack,
        resolve,
        stocktake,
        snapshot,
        resend,
    )
    for command in commands:
        cli.add_command(command)
