"""`cabinet-central`: serve, check-config, user add, token create, rebuild.

Every command takes `--config FILE` (env CENTRAL_CONFIG, default
/etc/cabinet-central/central.toml). Errors an operator can cause are one line on stderr
and an exit code (78 for configuration), never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from central.errors import EX_CONFIG, CentralError
from central.service.config import CentralConfig, load_central_config
from central.store import ROLES, Store
from config.loading import ConfigError

DEFAULT_CONFIG = Path("/etc/cabinet-central/central.toml")


class CabinetCentral(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CentralError as exc:
            click.echo(f"cabinet-central: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            ctx.exit(EX_CONFIG)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="CENTRAL_CONFIG",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="central.toml (env CENTRAL_CONFIG)",
)


def _config(path: Path) -> CentralConfig:
    return load_central_config(path)


def _store(config: CentralConfig) -> Store:
    store = Store.open(config.database_url)
    store.migrate()
    return store


@click.group(cls=CabinetCentral, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The centre of the reagent cabinets: verified record, console, commands."""


def main() -> None:
    cli(prog_name="cabinet-central")


@cli.command()
@config_option
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default="auto")
def serve(config_path: Path, log_format: str) -> None:
    """Ingest every cabinet's events and serve the console and API."""
    # The agent's structlog set-up (JSON for journald, readable on a terminal), imported
    # here only: central's modules see nothing of the agent but its wire contract.
    from agent.logs import configure as configure_logs
    from central.service.runtime import run

    configure_logs(log_format)
    run(_config(config_path))


@cli.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Check everything `serve` checks before it starts; exit 78 on a problem."""
    from central.service.runtime import open_parts

    config = _config(config_path)
    parts = open_parts(config, migrate=False)
    parts.store.close()
    devices = len(parts.registry.devices())
    click.echo(
        f"{config_path}: OK ({devices} devices, database {parts.store.backend}, "
        f"broker {config.broker.url}, listen {config.http.listen})"
    )


@cli.group()
def user() -> None:
    """Console and API accounts."""


@user.command("add")
@click.argument("login")
@click.option("--person", required=True, help="the policy person id this login acts as")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--password-stdin", is_flag=True, help="read the password from stdin")
@config_option
def user_add(login: str, person: str, role: str, password_stdin: bool, config_path: Path) -> None:
    """Add a login (asks for the password unless --password-stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    with _store(_config(config_path)) as store:
        store.add_user(login, person, role, password)
    click.echo(f"added {login} ({role}, acting as {person})")


@cli.group()
def token() -> None:
    """API tokens (Authorization: Bearer ...)."""


@token.command("create")
@click.argument("login")
@config_option
def token_create(login: str, config_path: Path) -> None:
    """Print a new API token for LOGIN (shown once; only its hash is kept)."""
    with _store(_config(config_path)) as store:
        click.echo(store.create_token(login))


@cli.command()
@config_option
def rebuild(config_path: Path) -> None:
    """Recompute every projection from the stored record."""
    with _store(_config(config_path)) as store:
        replayed = store.rebuild()
    click.echo(f"rebuilt the projections from {replayed} stored envelopes")
