"""The `cabinetctl` commands that talk to cabinets through the broker.

policy push, approve, approve-withdrawal, ack, snapshot and resend each send one signed
command and wait for the cabinet's verified answer (exit 0 applied, 3 rejected, 1 no
answer). `watch` is the all-day console. Attached to the main group by central.cli.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live

from agent.wire.topics import ANY, event_filter, status_filter
from central.chain import Timing
from central.commands import DEFAULT_TTL_S, MAX_TTL_S, AnswerWatch, IssuedCommand, issue
from central.console import render
from central.errors import EX_REJECTED, CentralError
from central.ledger import Ledger
from central.mqtt import BrokerConnection, BrokerOptions
from central.options import (
    EXISTING,
    PATH,
    broker_from,
    broker_options,
    central_key,
    key_option,
)
from central.options import registry_option as registry_opt
from central.policy_tools import load_policy_quietly, load_signed_policy
from central.registry import Registry, load_registry, registry_path
from central.timefmt import duration_s, grams_to_mg, utc_text
from central.watch import (
    CabinetStatus,
    ResendRequest,
    Seen,
    Step,
    WatchState,
    json_line,
)
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
@click.option("--by", help="policy person id of who acknowledges (recorded)")
@click.option("--comment", help="what was done or seen (recorded)")
@command_options
def ack(alarm_id: str, by: str | None, comment: str | None, **params: Any) -> None:
    """Acknowledge ALARM_ID: buzzer off; it stays open until its condition is gone (a
    discrepancy of the books until it is resolved)."""
    args: dict[str, Any] = {"alarm": alarm_id}
    if by is not None:
        args["by"] = by
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


# --- watch ----------------------------------------------------------------------------------


@click.command()
@click.option("--site", help="only this site (default: all)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, for piping")
@click.option("--store", type=PATH, help="keep what was verified in this ledger database")
@click.option("--bell", is_flag=True, help="ring the terminal bell on every new alarm")
@click.option("--duration", help="stop after this long (default: until Ctrl-C)")
@click.option("--session", help="persistent broker session name: missed events are queued")
@click.option(
    "--resend-after", default=1.0, show_default=True, help="seconds before a gap is asked for"
)
@key_option("needed to ask cabinets to resend gaps")
@registry_opt
@broker_options
def watch(**params: Any) -> None:
    """Live, verified view of all cabinets: alarms on top, event log below."""
    known = load_registry(registry_path(params.pop("registry")))
    key_path = params.pop("key")
    key = central_key(key_path) if key_path is not None else None
    site, prefix = params.pop("site"), params.pop("prefix")
    as_json, bell, store = params.pop("as_json"), params.pop("bell"), params.pop("store")
    duration = params.pop("duration")
    stop_at = time.monotonic() + duration_s(duration, "--duration") if duration else None
    session = params.pop("session")
    timing = Timing(grace_ms=int(float(params.pop("resend_after")) * 1000))
    options = broker_from(
        params,
        client_id=f"cabinetctl-watch-{session}" if session else None,
        session_expiry_s=7 * 24 * 3600 if session else 0,
    )
    ledger = Ledger(store) if store else None
    state = WatchState(
        known, prefix=prefix, timing=timing, lookup=ledger.lookup if ledger else None
    )
    if ledger is not None:
        for device_id, (seq, digest) in ledger.heads().items():
            if device_id in known.devices:
                state.chain(device_id).seed(seq, digest)
    loop = WatchLoop(state, known, key, options, prefix, as_json=as_json, bell=bell, ledger=ledger)
    try:
        loop.run(site, stop_at)
    finally:
        if ledger is not None:
            ledger.close()


class WatchLoop:
    """MQTT in, WatchState in the middle, screen or JSON lines and ledger out."""

    def __init__(
        self,
        state: WatchState,
        registry: Registry,
        key: Any,
        options: BrokerOptions,
        prefix: str,
        *,
        as_json: bool,
        bell: bool,
        ledger: Ledger | None,
    ) -> None:
        self.state, self.registry, self.key = state, registry, key
        self.options, self.prefix = options, prefix
        self.as_json, self.bell, self.ledger = as_json, bell, ledger
        self.console = Console()

    def run(self, site: str | None, stop_at: float | None) -> None:
        level = site or ANY
        filters = [event_filter(self.prefix, level), status_filter(self.prefix, level)]
        with BrokerConnection(self.options) as conn:
            conn.subscribe(filters)
            if self.as_json:
                self._print({"kind": "watching", "broker": self.options.url, "filters": filters})
            live = (
                nullcontext()
                if self.as_json
                else Live(console=self.console, screen=self.console.is_terminal, auto_refresh=False)
            )
            # Ctrl-C is how a person ends an all-day watch: not an error.
            with live as screen, suppress(KeyboardInterrupt):
                self._loop(conn, screen, stop_at)

    def _loop(self, conn: BrokerConnection, screen: Live | None, stop_at: float | None) -> None:
        drawn = 0.0
        while stop_at is None or time.monotonic() < stop_at:
            step = Step()
            try:
                message = conn.messages.get(timeout=0.2)
                step.extend(self.state.on_message(message.topic, message.payload, now_ms()))
                for _ in range(500):  # drain a burst before redrawing
                    message = conn.messages.get_nowait()
                    step.extend(self.state.on_message(message.topic, message.payload, now_ms()))
            except queue.Empty:
                pass
            step.extend(self.state.tick(now_ms()))
            self._ask_resends(conn, step)
            self._output(step)
            if screen is not None and time.monotonic() - drawn > 0.25:
                drawn = time.monotonic()
                screen.update(
                    render(
                        self.state,
                        now_ms=now_ms(),
                        broker=self.options.url,
                        connected=conn.connected,
                        height=self.console.size.height,
                    ),
                    refresh=True,
                )

    def _ask_resends(self, conn: BrokerConnection, step: Step) -> None:
        for ask in step.resends:
            what = f"seq {ask.from_seq}..{ask.to_seq}"
            if self.key is None:
                if ask.attempt == 1:
                    note = f"gap {what}: cannot ask for a resend without --key"
                    step.extend(self.state.note(note, ask.device, now_ms()))
                continue
            if not conn.connected:
                # The screen must not freeze on a dead link; the gap is asked for again.
                note = f"resend of {what} not sent: broker disconnected (will retry)"
                step.extend(self.state.note(note, ask.device, now_ms()))
                continue
            device = self.registry.devices[ask.device]
            args = {"from_seq": ask.from_seq, "to_seq": ask.to_seq}
            issued = issue(device, "resend", args, self.key, now_ms=now_ms(), prefix=self.prefix)
            try:
                conn.publish(issued.topic, issued.payload, timeout_s=2)
            except CentralError as exc:
                step.extend(
                    self.state.note(f"resend of {what} not sent: {exc}", ask.device, now_ms())
                )

    def _output(self, step: Step) -> None:
        if self.ledger is not None:
            for seen in step.shown:
                self.ledger.record(seen)
            self.ledger.commit()
        if self.as_json:
            items: list[Seen | CabinetStatus | ResendRequest] = [
                *step.statuses,
                *step.shown,
                *step.resends,
            ]
            for item in items:
                sys.stdout.write(json_line(item) + "\n")
            sys.stdout.flush()
        if self.bell and step.new_alarms:
            if self.as_json:
                sys.stderr.write("\a")
                sys.stderr.flush()
            else:
                self.console.bell()

    def _print(self, body: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(body, sort_keys=True) + "\n")
        sys.stdout.flush()


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
        watch,
    )
    for command in commands:
        cli.add_command(command)
