"""central.toml: what `cabinet-central` needs, validated like agent.toml.

    registry = "/etc/cabinet-central/devices.toml"     # cabinetctl's device registry
    central_key = "/etc/cabinet-central/central.key"   # cabinetctl keygen's key (0600)
    policies = "/etc/cabinet-central/policies"         # optional: *.json signed, *.toml
    time_zone = "Asia/Shanghai"
    state_dir = "/var/lib/cabinet-central"
    topic_prefix = "cabinet"

    [broker]                  # the agent's [broker] table, same keys and checks
    url = "mqtts://broker.example:8883"
    ca_file = "..."; cert_file = "..."; key_file = "..."
    client_id = "central-1"   # set: a persistent session (session_expiry_s) that
                              # keeps this process's share while it restarts

    [database]
    url = "postgresql://central@db/central"   # default: SQLite in state_dir

    [http]
    listen = "127.0.0.1:8080"

    [ingest]
    workers = "auto"          # processes verifying signatures; 0: in-process

Environment overrides (for tests and containers): CENTRAL_BROKER_URL,
CENTRAL_DATABASE_URL, CENTRAL_STATE_DIR, CENTRAL_HTTP_LISTEN. Every problem is reported
as `file:line: key: problem` and the CLI exits 78 (config.loading's helpers).
Relative paths are relative to the configuration file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from central.ingest.workers import auto_workers
from config.agent import BrokerConfig
from config.loading import ConfigError, Problem, read_toml, validate

DEFAULT_LISTEN = "127.0.0.1:8080"
TopicLevel = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Strict):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:///", "postgresql")):
            raise ValueError("expected sqlite:////abs/path.db or postgresql://...")
        return value


class HttpConfig(_Strict):
    listen: str = DEFAULT_LISTEN

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class IngestConfig(_Strict):
    batch: Annotated[StrictInt, Field(ge=1, le=10_000)] = 500  # envelopes per transaction
    # processes that parse and verify signatures (central.ingest.workers); 0: in-process
    workers: int | Literal["auto"] = "auto"
    resend_grace_ms: Annotated[StrictInt, Field(ge=0)] = 2_000  # reordering settles first
    resend_retry_ms: Annotated[StrictInt, Field(ge=100)] = 10_000
    resend_max_range: Annotated[StrictInt, Field(ge=1)] = 1_000

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        if value == "auto" or (type(value) is int and 0 <= value <= 64):
            return value
        raise ValueError('expected "auto" or a number of processes from 0 (in-process) to 64')


class CentralConfig(_Strict):
    registry: Path
    central_key: Path
    policies: Path | None = None
    time_zone: str = "Asia/Shanghai"
    state_dir: Path = Path("/var/lib/cabinet-central")
    topic_prefix: TopicLevel = "cabinet"
    broker: BrokerConfig = BrokerConfig()
    database: DatabaseConfig = DatabaseConfig()
    http: HttpConfig = HttpConfig()
    ingest: IngestConfig = IngestConfig()

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value

    @property
    def ingest_workers(self) -> int:
        workers = self.ingest.workers
        return auto_workers() if workers == "auto" else workers

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.state_dir / 'central.db'}"


_OVERRIDES = {
    "CENTRAL_BROKER_URL": ("broker", "url"),
    "CENTRAL_DATABASE_URL": ("database", "url"),
    "CENTRAL_HTTP_LISTEN": ("http", "listen"),
}
_PATHS = ("registry", "central_key", "policies", "state_dir")
_BROKER_PATHS = ("password_file", "ca_file", "cert_file", "key_file")


def load_central_config(path: Path, environ: Mapping[str, str] | None = None) -> CentralConfig:
    env = os.environ if environ is None else environ
    text, data = read_toml(path)
    for name, (table, key) in _OVERRIDES.items():
        if name in env:
            if not env[name]:
                raise ConfigError(name, [Problem("", "is set but empty")])
            section = data.setdefault(table, {})
            if isinstance(section, dict):
                section[key] = env[name]
    if "CENTRAL_STATE_DIR" in env:
        if not env["CENTRAL_STATE_DIR"]:
            raise ConfigError("CENTRAL_STATE_DIR", [Problem("", "is set but empty")])
        data["state_dir"] = env["CENTRAL_STATE_DIR"]
    config = validate(CentralConfig, data, str(path), text)
    base = path.resolve().parent

    def absolute(value: Path | None) -> Path | None:
        return value if value is None or value.is_absolute() else base / value

    broker = config.broker.model_copy(
        update={k: absolute(getattr(config.broker, k)) for k in _BROKER_PATHS}
    )
    return config.model_copy(
        update={k: absolute(getattr(config, k)) for k in _PATHS} | {"broker": broker}
    )
