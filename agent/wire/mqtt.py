"""The paho client both ends start from: protocol, identity, TLS and credentials.

The agent and `cabinetctl` / `cabinet-central` meet at the broker with the same rules:
MQTT 5 (or 3.1.1 for an old broker), TLS with an optional client certificate, and a
username whose password is read from a file (never from the command line or a config
file, where it would be readable). Callbacks, the Will and the connection itself are
each side's own. Imported on its own (`agent.wire.mqtt`): the rest of the contract has
no I/O and no paho.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.wire.encoding import WireError


class BrokerSetupError(WireError):
    """TLS material or a password file that cannot be used; `str()` says which and why."""


@dataclass(frozen=True)
class BrokerAccess:
    """How to prove who we are to the broker, and how to check who it is."""

    tls: bool = False
    ca_file: Path | None = None  # None with tls: the system's trusted CAs
    cert_file: Path | None = None  # a client certificate, if the broker asks for one
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None


def paho_client(
    client_id: str, access: BrokerAccess, *, mqtt5: bool = True, persistent: bool = False
) -> mqtt.Client:
    """A paho 2 client with TLS and credentials set, not connected, without callbacks.

    `persistent` asks an MQTT 3.1.1 broker to keep the session (MQTT 5 says so with
    its session expiry when connecting).
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
        clean_session=None if mqtt5 else not persistent,
    )
    if access.tls:
        try:
            client.tls_set(
                ca_certs=_text(access.ca_file),
                certfile=_text(access.cert_file),
                keyfile=_text(access.key_file),
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise BrokerSetupError(f"TLS setup: {exc}") from None
    if access.username:
        password = None
        if access.password_file is not None:
            try:
                password = access.password_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise BrokerSetupError(f"password file {access.password_file}: {exc}") from None
        client.username_pw_set(access.username, password)
    return client


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None
