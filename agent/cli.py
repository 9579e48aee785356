"""`cabinet-agent`: the daemon's command line (keygen, check-config, replay, run, status).

Errors are one clear line on stderr with a documented exit code, never a traceback:
78 a configuration or policy problem (EX_CONFIG), 2 a malformed scenario or usage,
1 anything else that stops the command.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import structlog

from agent import __version__
from agent.logs import configure
from agent.wire import SigningKey
from agent.wire.key_files import KeyFileError, read_key, write_new_key
from config.loading import EX_CONFIG, ConfigError, load_model

if TYPE_CHECKING:
    from drivers.scenario import Scenario

EX_USAGE = 2


def fail(message: str, code: int) -> None:
    click.echo(f"cabinet-agent: {message}", err=True)
    sys.exit(code)


def read_scenario(path: Path) -> Scenario:
    """A scenario file, or exit 2 naming the file (and the line, for a bad line)."""
    from drivers.scenario import ScenarioError, parse_scenario

    try:
        return parse_scenario(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot read scenario: {exc}", EX_USAGE)
    except ScenarioError as exc:
        fail(f"{path}: {exc}", EX_USAGE)
    raise AssertionError("unreachable: fail() exits")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cabinet-agent")
def main() -> None:
    """The agent of a two-person-rule reagent cabinet."""


@main.command()
@click.option(
    "--out", "out", required=True, type=click.Path(path_type=Path), help="key file to create"
)
def keygen(out: Path) -> None:
    """Create the device's Ed25519 key (mode 0600) and print its public key."""
    try:
        key = write_new_key(out)
    except KeyFileError as exc:
        fail(str(exc), 1)
        return
    click.echo(f"pubkey {key.public.to_text()}")


@main.command("check-config")
@click.argument("file", type=click.Path(path_type=Path))
def check_config(file: Path) -> None:
    """Make every check `run` makes before it starts; exit 78 naming each problem."""
    from agent.preflight import check_before_start
    from config.agent import load_agent_config

    try:
        config = load_agent_config(file)
        warnings = check_before_start(config, file)
    except ConfigError as exc:
        fail(f"configuration error\n{exc}", EX_CONFIG)
        return
    for warning in warnings:
        click.echo(f"cabinet-agent: warning: {warning}", err=True)
    parts = [
        name
        for name in ("gpio", "readers", "modbus", "bridge", "sim")
        if getattr(config.hardware, name)
    ]
    click.echo(
        f"{file}: OK — device {config.device}, site {config.site}, broker {config.broker.url}, "
        f"state {config.state_dir}, hardware: {', '.join(parts) or 'none'}"
    )


@main.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--policy", "policy_file", required=True, type=click.Path(path_type=Path))
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="agent.toml (for the device id)",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path),
    help="device key file; default: a fresh key",
)
def replay(
    scenario: Path, policy_file: Path, config_file: Path | None, key_file: Path | None
) -> None:
    """Run a scenario on the real core with a virtual clock; print envelopes as JSONL."""
    from agent.replay import replay as run_replay
    from config.agent import load_agent_config
    from config.policy import Policy

    configure("console" if sys.stderr.isatty() else "json", level="warning")
    parsed = read_scenario(scenario)
    try:
        policy = load_model(Policy, policy_file)
        device = load_agent_config(config_file).device if config_file else None
    except ConfigError as exc:
        fail(f"configuration error\n{exc}", EX_CONFIG)
        return
    if device is None:
        device = policy.cabinet if policy.cabinet != "*" else "cab-sim-0001"
    if key_file is not None:
        try:
            key = read_key(key_file)
        except KeyFileError as exc:
            fail(str(exc), 1)
            return
    else:
        key = SigningKey.generate()
        click.echo(f"pubkey {key.public.to_text()}", err=True)
    out = sys.stdout.buffer
    run_replay(parsed, policy, key, device, lambda env: out.write(env.payload + b"\n"))
    out.flush()


@main.command()
@click.option("--config", "config_file", required=True, type=click.Path(path_type=Path))
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path),
    help="signed policy JSON (or plain TOML with the simulated cabinet)",
)
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(path_type=Path),
    help="scenario for the simulated cabinet (JSON Lines, see examples/scenarios/)",
)
@click.option("--speed", type=click.FloatRange(min=0.01, max=1000), default=1.0, show_default=True)
@click.option(
    "--exit-after-scenario",
    type=click.FloatRange(min=0),
    default=None,
    help="stop this many (scaled) seconds after the scenario's last line",
)
def run(
    config_file: Path,
    policy_file: Path | None,
    scenario_file: Path | None,
    speed: float,
    exit_after_scenario: float | None,
) -> None:
    """Run the agent: drivers, rules, outbox, uplink, health."""
    from agent.daemon import Daemon, RunOptions
    from agent.outbox import OutboxError
    from agent.policy_source import PolicyError
    from agent.preflight import check_before_start, prepare_state_dir
    from agent.wire.key_files import KeyFileError
    from config.agent import load_agent_config

    try:
        config = load_agent_config(config_file)
        warnings = check_before_start(config, config_file)
    except ConfigError as exc:
        fail(f"configuration error\n{exc}", EX_CONFIG)
        return
    configure(config.log_format)
    log = structlog.get_logger("cli")
    for warning in warnings:
        log.warning("config.warning", problem=warning)
    try:
        for tightened in prepare_state_dir(config):
            log.warning("state_dir.tightened", path=tightened)
    except OSError as exc:
        fail(f"configuration error\n{config_file}: state_dir: {exc}", EX_CONFIG)
        return
    scenario = None
    if scenario_file is not None:
        if not config.hardware.simulated:
            fail("--scenario needs the simulated cabinet ([hardware.sim] in the config)", EX_USAGE)
        scenario = read_scenario(scenario_file)
    options = RunOptions(
        config_file,
        policy_file,
        scenario,
        speed,
        exit_after_scenario / speed if exit_after_scenario is not None else None,
    )
    try:
        daemon = Daemon(config, options)
        daemon.install_signals()
        code = daemon.run()
    except ConfigError as exc:
        fail(f"configuration error\n{exc}", EX_CONFIG)
        return
    except (KeyFileError, OutboxError, PolicyError) as exc:
        fail(str(exc), EX_CONFIG)
        return
    except sqlite3.DatabaseError as exc:
        # A damaged outbox is evidence: never "repair" it by starting a new one here.
        fail(
            f"the outbox in {config.state_dir} cannot be opened ({exc}); keep the file for "
            "the audit, move it aside and start again to begin a new record",
            1,
        )
        return
    sys.exit(code)


@main.command()
@click.option("--config", "config_file", required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the raw status object")
def status(config_file: Path, as_json: bool) -> None:
    """Show the cabinet's live state: door, lock, session, pending badge, alarms, backlog."""
    import json

    from agent.status import read_status, render
    from config.agent import load_agent_config

    try:
        config = load_agent_config(config_file)
    except ConfigError as exc:
        fail(f"configuration error\n{exc}", EX_CONFIG)
        return
    current = read_status(config.state_dir)
    if current is None:
        fail(f"no status in {config.state_dir}: is cabinet-agent running?", 1)
        return
    click.echo(json.dumps(current, indent=2, sort_keys=True) if as_json else render(current))


if __name__ == "__main__":
    main()
