"""Options shared by several `cabinetctl` commands, with their environment variables.

Operators set CABINETCTL_REGISTRY, CABINETCTL_KEY, CABINETCTL_BROKER (and the TLS ones)
once in their shell profile; every command then finds the same registry, key and broker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from agent.wire import SigningKey, read_key
from central.errors import CentralError
from central.mqtt import DEFAULT_BROKER, BrokerOptions

F = TypeVar("F", bound=Callable[..., Any])

PATH = click.Path(path_type=Path)
EXISTING = click.Path(path_type=Path, exists=True, dir_okay=False)


def registry_option(func: F) -> F:
    return click.option(
        "--registry",
        type=PATH,
        envvar="CABINETCTL_REGISTRY",
        default=None,
        help="device registry TOML (env CABINETCTL_REGISTRY, default ./devices.toml)",
    )(func)


def key_option(required_for: str) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        return click.option(
            "--key",
            type=PATH,
            envvar="CABINETCTL_KEY",
            default=None,
            help=f"central private key file, {required_for} (env CABINETCTL_KEY)",
        )(func)

    return decorate


def central_key(path: Path | None) -> SigningKey:
    """The central private key given by --key; its file errors are shown by the CLI."""
    if path is None:
        raise CentralError("this needs the central key: give --key FILE (or CABINETCTL_KEY)")
    return read_key(path)


def broker_options(func: F) -> F:
    options = [
        click.option(
            "--broker",
            envvar="CABINETCTL_BROKER",
            default=DEFAULT_BROKER,
            show_default=True,
            help="mqtt://host:port or mqtts://host:port (env CABINETCTL_BROKER)",
        ),
        click.option("--ca", type=EXISTING, envvar="CABINETCTL_CA", help="CA certificate (TLS)"),
        click.option(
            "--cert", type=EXISTING, envvar="CABINETCTL_CERT", help="client certificate (TLS)"
        ),
        click.option(
            "--cert-key", type=EXISTING, envvar="CABINETCTL_CERT_KEY", help="its private key"
        ),
        click.option("--username", envvar="CABINETCTL_USERNAME", help="broker user name"),
        click.option(
            "--password-file",
            type=EXISTING,
            envvar="CABINETCTL_PASSWORD_FILE",
            help="file holding the broker password",
        ),
        click.option(
            "--prefix",
            envvar="CABINETCTL_PREFIX",
            default="cabinet",
            show_default=True,
            help="topic prefix (agent.toml topic_prefix)",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def broker_from(params: dict[str, Any], **extra: Any) -> BrokerOptions:
    return BrokerOptions(
        url=params.pop("broker"),
        ca=params.pop("ca"),
        cert=params.pop("cert"),
        cert_key=params.pop("cert_key"),
        username=params.pop("username"),
        password_file=params.pop("password_file"),
        **extra,
    )
