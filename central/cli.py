"""`cabinetctl`: the centre's tool for keys, devices, policies, verification and audit.

Commands that talk to cabinets over MQTT (policy push, approve, ack, snapshot, resend,
watch) live in central.cli_remote and are attached to this group at import.
Every operator error is one line on stderr and a non-zero exit (central.errors); a
traceback means a bug.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from agent.wire import KeyFileError, read_public_key, write_new_key
from central.cli_remote import attach_remote_commands
from central.errors import EX_CONFIG, EX_FAILURE, CentralError
from central.options import EXISTING, PATH, central_key, key_option, registry_option
from central.policy_tools import (
    VersionBook,
    check_policy,
    load_policy_quietly,
    render_signed,
    sign_checked,
)
from central.reconcile import daily_report
from central.reconcile import render_json as report_json
from central.reconcile import render_text as report_text
from central.registry import (
    add_device,
    load_registry,
    registry_path,
    remove_device,
    save_registry,
)
from central.report import render_csv as usage_csv
from central.report import render_json as usage_json
from central.report import session_context, usage_rows
from central.store_arg import (
    STORE_HELP,
    URL_SCHEMES,
    Names,
    import_envelopes,
    open_store,
    store_envelopes,
)
from central.timefmt import DEFAULT_TZ, local_day, parse_local_instant, zone
from central.verify import read_input, verify_input
from central.watch_cli import watch
from config.loading import ConfigError


class CabinetCtl(click.Group):
    """Turns the errors an operator can cause into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CentralError as exc:
            click.echo(f"cabinetctl: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except KeyFileError as exc:  # a key file the operator named: missing, unsafe, ...
            click.echo(f"cabinetctl: {exc}", err=True)
            ctx.exit(EX_FAILURE)
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            ctx.exit(EX_CONFIG)


@click.group(cls=CabinetCtl, context_settings={"help_option_names": ["-h", "--help"]})
# The installed distribution's version: the same number `cabinet-agent --version` prints
# (central imports nothing of the agent but its wire contract).
@click.version_option(package_name="cabinet-agent", prog_name="cabinetctl")
def cli() -> None:
    """Central tool for smart reagent cabinets: keys, devices, policies, commands, audit."""


def main() -> None:
    try:
        cli(prog_name="cabinetctl")
    except BrokenPipeError:
        # `cabinetctl export | head`: the reader has gone; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


# --- keys ----------------------------------------------------------------------------------


@cli.command()
@click.option("--out", required=True, type=PATH, help="private key file to create (mode 0600)")
def keygen(out: Path) -> None:
    """Create the central signing key; print its public half for agent.toml."""
    key = write_new_key(out)
    click.echo(f"pubkey {key.public.to_text()}")


# --- verify --------------------------------------------------------------------------------


@cli.command()
@click.argument("source", default="-")
@click.option("--pubkey", help="the device's public key: base64url, `pubkey <b64>`, or a file")
@registry_option
@click.option("--all", "show_all", is_flag=True, help="print every failure, one per line")
def verify(source: str, pubkey: str | None, registry: Path | None, show_all: bool) -> None:
    """Check signatures, hash chain and seq contiguity of SOURCE.

    SOURCE is a JSON Lines file of envelopes ('-' = stdin), an agent outbox .db, the
    centre's store (its SQLite file, or a sqlite:// or postgresql:// URL) or a ledger .db
    of an older cabinetctl. Exit 0 only if every event verifies.
    """
    if pubkey is not None:
        keys: Any = read_public_key(pubkey)
    else:
        keys = load_registry(registry_path(registry)).keys()
    items = store_envelopes(source) if source.startswith(URL_SCHEMES) else read_input(source)
    verdict = verify_input(items, keys)
    if show_all:
        for failure in verdict.failures:
            click.echo(f"FAIL: {failure}")
    click.echo(verdict.summary())
    if not verdict.ok:
        sys.exit(EX_FAILURE)


# --- devices -------------------------------------------------------------------------------


@cli.group()
def device() -> None:
    """The device registry: id -> public key, site, name."""


@device.command("add")
@click.argument("device_id")
@click.option("--pubkey", required=True, help="base64url, `pubkey <b64>`, or a file with it")
@click.option("--site", required=True, help="site (MQTT topic level, as in agent.toml)")
@click.option("--name", default="", help="human name: building, room")
@click.option("--replace", is_flag=True, help="change an already registered device")
@registry_option
def device_add(
    device_id: str, pubkey: str, site: str, name: str, replace: bool, registry: Path | None
) -> None:
    """Register a cabinet (its key is what its events are verified with)."""
    path = registry_path(registry)
    current = load_registry(path, missing_ok=True)
    updated = add_device(current, device_id, read_public_key(pubkey), site, name, replace=replace)
    save_registry(updated)
    click.echo(f"{device_id}: registered in {path} (site {site})")


@device.command("remove")
@click.argument("device_id")
@registry_option
def device_remove(device_id: str, registry: Path | None) -> None:
    """Forget a cabinet: its events will be flagged as from an unknown device."""
    path = registry_path(registry)
    save_registry(remove_device(load_registry(path), device_id))
    click.echo(f"{device_id}: removed from {path}")


@device.command("list")
@registry_option
def device_list(registry: Path | None) -> None:
    """Print the registered cabinets."""
    known = load_registry(registry_path(registry))
    if not known.devices:
        click.echo(f"no devices in {known.path}")
        return
    rows = [("device", "site", "name", "pubkey")]
    rows += [(d.id, d.site, d.name, d.pubkey_text) for _, d in sorted(known.devices.items())]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join([*(r[i].ljust(widths[i]) for i in range(3)), r[3]]))


# --- policy --------------------------------------------------------------------------------


@cli.group()
def policy() -> None:
    """Check, sign and push cabinet policies."""


def _book(registry: Path | None, previous: Path | None) -> VersionBook | None:
    return None if previous is not None else VersionBook.beside(registry_path(registry))


@policy.command("check")
@click.argument("file", type=PATH)
@click.option("--previous", type=EXISTING, help="signed policy the new version must exceed")
@key_option("to verify --previous (optional)")
@registry_option
def policy_check(
    file: Path, previous: Path | None, key: Path | None, registry: Path | None
) -> None:
    """List every mistake in FILE with its line and key (exit 78), or say it is fine."""
    central = central_key(key).public if key is not None else None
    checked = check_policy(file, _book(registry, previous), previous, central)
    p = checked.policy
    click.echo(
        f"{file}: OK: version {p.version} for cabinet {p.cabinet}, {len(p.person)} persons, "
        f"{len(p.container)} containers"
    )


@policy.command("sign")
@click.argument("file", type=PATH)
@click.option("--out", type=PATH, help="write the signed JSON here (default: stdout)")
@click.option("--previous", type=EXISTING, help="signed policy the new version must exceed")
@key_option("required")
@registry_option
def policy_sign(
    file: Path, out: Path | None, previous: Path | None, key: Path | None, registry: Path | None
) -> None:
    """Check FILE, then write the signed policy JSON the agent accepts."""
    signing = central_key(key)
    book = _book(registry, previous)
    checked = check_policy(file, book, previous, signing.public)
    text = render_signed(sign_checked(checked, signing))
    if out is None:
        click.echo(text, nl=False)
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CentralError(f"cannot write {out}: {exc.strerror}") from None
    if book is not None:
        book.record(checked.policy.cabinet, checked.policy.version, checked.digest)
    where = f" -> {out}" if out else ""
    click.echo(
        f"signed version {checked.policy.version} for {checked.policy.cabinet}{where}", err=True
    )


# --- the centre's store: import, export, daily report ---------------------------------------

tz_option = click.option(
    "--tz", default=DEFAULT_TZ, show_default=True, help="time zone for days and times shown"
)


@cli.command("import")
@click.argument("source")
@click.option("--store", "store_text", required=True, help=STORE_HELP + "; created if missing")
@registry_option
def import_(source: str, store_text: str, registry: Path | None) -> None:
    """Verify SOURCE (as `verify` does) and add its events to the store: all or nothing.

    SOURCE is JSON Lines, an agent outbox .db or a ledger .db of an older cabinetctl
    (how such a ledger is carried over into the store).
    """
    known = load_registry(registry_path(registry))
    items = read_input(source)
    verdict = verify_input(items, known.keys())
    if not verdict.ok:
        raise CentralError(f"nothing imported: {verdict.summary()}")
    with open_store(store_text, known, create=True) as store:
        added = import_envelopes(store, known, [item.raw for item in items])
    click.echo(f"{added} new events in {store_text} ({verdict.events - added} already there)")


@cli.command()
@click.option("--store", "store_text", required=True, help=STORE_HELP)
@click.option("--since", help="from (inclusive): 2026-03-01 or 2026-03-01T08:00 (local)")
@click.option("--until", help="to (exclusive)")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option("--out", type=PATH, help="write here instead of stdout")
@click.option("--policy", "policy_file", type=EXISTING, help="policy TOML, for names")
@tz_option
@registry_option
def export(
    store_text: str,
    since: str | None,
    until: str | None,
    fmt: str,
    out: Path | None,
    policy_file: Path | None,
    tz: str,
    registry: Path | None,
) -> None:
    """The usage ledger (领用记录): one row per change of the books, with purpose and approver.

    CSV is UTF-8 with a byte order mark, so a spreadsheet opens Chinese names intact.
    """
    zone_info = zone(tz)
    known = load_registry(registry_path(registry))
    policy_names = load_policy_quietly(policy_file)
    since_ms = parse_local_instant(since, "--since", zone_info) if since else None
    until_ms = parse_local_instant(until, "--until", zone_info) if until else None
    with open_store(store_text, known, create=False) as store:
        names = Names(store, policy_names)
        ledger_rows = store.ledger(since_ms=since_ms, until_ms=until_ms)
        context = session_context(store, sorted({r.device for r in ledger_rows}))
        rows = usage_rows(ledger_rows, known, names, zone_info, context)
    text = usage_csv(rows) if fmt == "csv" else usage_json(rows)
    if out is None:
        click.echo(text, nl=False)
    else:
        try:
            # newline="": the CSV's own CRLF line ends, unchanged on every platform
            out.write_text(text, encoding="utf-8", newline="")
        except OSError as exc:
            raise CentralError(f"cannot write {out}: {exc.strerror}") from None
        click.echo(f"{len(rows)} rows -> {out}", err=True)


@cli.group()
def report() -> None:
    """Reports from the centre's store."""


@report.command("daily")
@click.option("--store", "store_text", required=True, help=STORE_HELP)
@click.option("--date", "day", help="local day, YYYY-MM-DD (default: today in --tz)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--policy", "policy_file", type=EXISTING, help="policy TOML, for names")
@tz_option
@registry_option
def report_daily(
    store_text: str,
    day: str | None,
    fmt: str,
    policy_file: Path | None,
    tz: str,
    registry: Path | None,
) -> None:
    """Book vs scale (账物相符) for one local day: movements, the day's received, disposed,
    adjusted and stocktake records, open discrepancies and their age; exit 1 if anything
    is off."""
    zone_info = zone(tz)
    known = load_registry(registry_path(registry))
    policy_names = load_policy_quietly(policy_file)
    now = int(time.time() * 1000)
    local = local_day(day, now, zone_info)
    with open_store(store_text, known, create=False) as store:
        result = daily_report(store, local, zone_info, Names(store, policy_names), now)
    click.echo(report_text(result) if fmt == "text" else report_json(result), nl=False)
    if not result.balanced:
        sys.exit(EX_FAILURE)


attach_remote_commands(cli, policy)
cli.add_command(watch)
