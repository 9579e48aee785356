"""`cabinet-agent`: the daemon's command line (keygen, check-config, replay, run, status).

Errors are one clear line on stderr with a documented exit code, never a traceback:
78 a configuration or policy problem (EX_CONFIG), 2 a malformed scenario or usage,
1 anything else that stops the command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent import __version__
from agent.keys import KeyFileError, read_key, write_new_key
from agent.logs import configure
from agent.wire import SigningKey
from config.loading import EX_CONFIG, ConfigError, load_model

EX_USAGE = 2


def fail(message: str, code: int) -> None:
    click.echo(f"cabinet-agent: {message}", err=True)
    sys.exit(code)


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
    """Validate an agent.toml; exit 78 naming the file, key and problem if it is wrong."""
    from config.agent import load_agent_config

    try:
        config = load_agent_config(file)
    except ConfigError as exc:
        fail(f"configuration error\n{exc}", EX_CONFIG)
        return
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
    from drivers.scenario import ScenarioError, parse_scenario

    configure("console" if sys.stderr.isatty() else "json", level="warning")
    try:
        text = scenario.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{scenario}: cannot read scenario: {exc}", EX_USAGE)
        return
    try:
        parsed = parse_scenario(text)
    except ScenarioError as exc:
        fail(f"{scenario}: {exc}", EX_USAGE)
        return
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


if __name__ == "__main__":
    main()
