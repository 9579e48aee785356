"""agent.toml: what one cabinet is, where its state lives, how it reaches the centre."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from config.hardware import HardwareConfig
from config.loading import ConfigError, Problem, read_toml, validate

DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
TopicLevel = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_broker_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError("broker url must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("broker url has no host")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as exc:
        raise ValueError(f"broker url port: {exc}") from None
    return url


class BrokerConfig(_Strict):
    url: str = "mqtt://127.0.0.1:1883"
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None  # defaults to the device id
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: Annotated[StrictInt, Field(ge=5, le=3600)] = 30
    session_expiry_s: Annotated[StrictInt, Field(ge=0)] = 7 * 24 * 3600
    inflight: Annotated[StrictInt, Field(ge=1, le=1000)] = 64
    drain_per_s: Annotated[StrictInt, Field(ge=1)] = 5000  # backlog rate bound
    reconnect_min_s: Annotated[StrictInt, Field(ge=1)] = 1
    reconnect_max_s: Annotated[StrictInt, Field(ge=1)] = 60

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_broker_url(value)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


class KeysConfig(_Strict):
    device_key: Path = Path("device.key")  # relative paths are under state_dir
    central_pubkey: str | None = None  # base64url Ed25519 key that signs policies/commands


class OutboxConfig(_Strict):
    # ~30 days of a busy cabinet's events (≈2 KB/min of access, inventory and
    # telemetry) fit in well under 256 MiB; the cap protects the SD card, not the log.
    max_bytes: Annotated[StrictInt, Field(ge=64 * 1024)] = 256 * 1024 * 1024


class HealthConfig(_Strict):
    heartbeat_s: Annotated[StrictInt, Field(ge=1)] = 300
    watchdog_stall_s: Annotated[StrictInt, Field(ge=1)] = 20


class AgentConfig(_Strict):
    device: DeviceId
    site: TopicLevel
    topic_prefix: TopicLevel = "cabinet"
    state_dir: Path = Path("/var/lib/cabinet-agent")
    log_format: Literal["auto", "json", "console"] = "auto"
    broker: BrokerConfig = BrokerConfig()
    keys: KeysConfig = KeysConfig()
    outbox: OutboxConfig = OutboxConfig()
    health: HealthConfig = HealthConfig()
    hardware: HardwareConfig = HardwareConfig()

    def state_path(self, path: Path) -> Path:
        return path if path.is_absolute() else self.state_dir / path


def load_agent_config(path: Path, environ: dict[str, str] | None = None) -> AgentConfig:
    """Read agent.toml, then apply CABINET_BROKER_URL and CABINET_STATE_DIR."""
    env = os.environ if environ is None else environ
    text, data = read_toml(path)
    source = str(path)
    if "CABINET_BROKER_URL" in env:
        data.setdefault("broker", {})
        if isinstance(data["broker"], dict):
            data["broker"]["url"] = env["CABINET_BROKER_URL"]
    if "CABINET_STATE_DIR" in env:
        if not env["CABINET_STATE_DIR"]:
            raise ConfigError("CABINET_STATE_DIR", [Problem("", "is set but empty")])
        data["state_dir"] = env["CABINET_STATE_DIR"]
    config = validate(AgentConfig, data, source, text)
    base = path.resolve().parent
    # Relative paths in the file are relative to the file, except key paths (state_dir).
    state_dir = config.state_dir if config.state_dir.is_absolute() else base / config.state_dir
    return config.model_copy(update={"state_dir": state_dir})
