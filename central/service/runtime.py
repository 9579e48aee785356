"""`cabinet-central serve`: one process = the ingest + the resend ticker + the web app.

    build(config) -> Service      # opens everything a check can open, in check-config too
    service.run()                 # until SIGTERM/SIGINT (uvicorn handles the signals)

Several processes may run on one database and one broker (shared subscription); each
asks for missing seqs only when it wins the store's compare-and-set (gaps.py).
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from agent.wire import KeyFileError, SigningKey, read_key
from central.errors import EX_CONFIG, CentralError
from central.ingest.client import IngestClient
from central.ingest.commands import CommandGateway
from central.ingest.pipeline import Ingest
from central.registry import Device, Registry, load_registry
from central.service.config import CentralConfig
from central.service.policies import load_policies
from central.store import Store
from config.loading import ConfigError

log = structlog.get_logger("central.service")
TICK_S = 0.5
REGISTRY_CHECK_S = 5.0


@dataclass
class RegistryWatch:
    """The registry, re-read when its file changes (cabinetctl device add), never half."""

    path: Path
    registry: Registry
    mtime: float = 0.0
    checked: float = field(default_factory=time.monotonic)

    def devices(self) -> Mapping[str, Device]:
        return self.registry.devices

    def refresh(self) -> bool:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return False
        if mtime == self.mtime:
            return False
        try:
            self.registry = load_registry(self.path)
        except (CentralError, ConfigError) as exc:
            log.error("registry.unreadable", path=str(self.path), error=str(exc))
            return False
        self.mtime = mtime
        return True


def web_secret(state_dir: Path) -> str:
    """The session-signing secret, made once (0600) and shared by processes on one host."""
    path = state_dir / "web-secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="ascii").strip()


@dataclass
class Parts:
    config: CentralConfig
    store: Store
    registry: RegistryWatch
    key: SigningKey


def open_parts(config: CentralConfig, *, migrate: bool = True) -> Parts:
    """Everything `serve` needs before it connects; `check-config` calls the same."""
    try:
        config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CentralError(f"state_dir {config.state_dir}: {exc.strerror}", EX_CONFIG) from None
    if not os.access(config.state_dir, os.W_OK):
        raise CentralError(f"state_dir {config.state_dir}: not writable", EX_CONFIG)
    registry = load_registry(config.registry)
    try:
        key = read_key(config.central_key)
    except KeyFileError as exc:
        raise CentralError(f"central_key {exc}", EX_CONFIG) from None
    policies = load_policies(config.policies, key.public)
    store = Store.open(config.database_url)
    try:
        if migrate:
            store.migrate()
        elif not store.ping():
            raise CentralError(f"database {store.backend}: cannot connect", EX_CONFIG)
        if migrate:
            store.register_devices((d.id, d.site) for d in registry.devices.values())
            for cabinet, policy in policies.items():
                store.set_policy_names(cabinet, policy)
    except BaseException:
        store.close()
        raise
    watch = RegistryWatch(config.registry, registry, config.registry.stat().st_mtime)
    return Parts(config, store, watch, key)


class Service:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        config = parts.config
        self.client = IngestClient(config.broker, config.topic_prefix)
        self.alarm_client = IngestClient(
            config.broker, config.topic_prefix, lane="alarms", messages=self.client.messages
        )
        self.ingest = Ingest(
            [self.client, self.alarm_client],
            parts.store,
            parts.registry.devices,
            batch=config.ingest.batch,
            workers=config.ingest_workers,
        )
        self.gateway = CommandGateway(
            parts.store,
            parts.registry.devices,
            parts.key,
            self.client.publish,
            prefix=config.topic_prefix,
        )
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="resend", daemon=True)

    def ingest_connected(self) -> bool:
        return self.client.connected and self.alarm_client.connected

    def start(self) -> None:
        self.client.start()
        self.alarm_client.start()
        self.ingest.start()
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        self.client.stop()
        self.alarm_client.stop()
        self.ingest.stop()
        self._ticker.join(5)
        self.parts.store.close()

    def _tick_loop(self) -> None:
        last_registry = time.monotonic()
        while not self._stop.wait(TICK_S):
            if time.monotonic() - last_registry >= REGISTRY_CHECK_S:
                last_registry = time.monotonic()
                if self.parts.registry.refresh():
                    self._quietly(self._register)
            if self.client.connected:
                self._quietly(self.ask_for_gaps)

    def _register(self) -> None:
        devices = self.parts.registry.devices().values()
        self.parts.store.register_devices((d.id, d.site) for d in devices)

    def _quietly(self, work: Any) -> None:
        try:
            work()
        except CentralError as exc:
            log.warning("tick.failed", error=exc.message)
        except LookupError as exc:
            log.warning("tick.failed", error=str(exc))

    def ask_for_gaps(self) -> None:
        ingest = self.parts.config.ingest
        for ask in self.parts.store.due_resends(
            int(time.time() * 1000),
            grace_ms=ingest.resend_grace_ms,
            retry_ms=ingest.resend_retry_ms,
            max_range=ingest.resend_max_range,
        ):
            self.gateway.fire(ask.device, "resend", {"from_seq": ask.lo, "to_seq": ask.hi})
            log.info("resend.asked", device=ask.device, lo=ask.lo, hi=ask.hi, attempt=ask.attempt)

    def app(self) -> Any:
        config = self.parts.config
        try:
            from central.web.app import create_app
            from central.web.settings import WebSettings
        except ImportError:
            return placeholder_app(self)
        settings = WebSettings(
            secret_key=web_secret(config.state_dir),
            time_zone=config.time_zone,
            ingest_connected=self.ingest_connected,
        )
        return create_app(self.parts.store, self.gateway, settings)


def placeholder_app(service: Service) -> Any:
    """Until the console (central/web) is installed: /api/health only."""
    import json

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body: dict[str, Any]
        if scope["path"] != "/api/health":
            status, body = 404, {"error": "the console is not installed"}
        else:
            database = "ok" if service.parts.store.ping() else "down"
            ingest = "connected" if service.ingest_connected() else "down"
            ok = database == "ok" and ingest == "connected"
            status, body = (200 if ok else 503), {"ok": ok, "ingest": ingest, "database": database}
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def run(config: CentralConfig) -> None:
    import uvicorn

    # uvicorn handles SIGTERM/SIGINT while it serves, then re-raises the signal to the
    # handler that was there before: make that one a no-op, so the process goes on to
    # stop the ingest cleanly and exits 0 (systemd counts a clean stop as success).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # The ingest thread is CPU-bound (verify, store); paho's network thread must still
    # read the socket promptly, or an alarm waits behind a backlog it has not even read.
    sys.setswitchinterval(0.001)
    parts = open_parts(config)
    service = Service(parts)
    service.start()
    log.info("serve.started", database=parts.store.backend, listen=config.http.listen)
    try:
        server = uvicorn.Server(
            uvicorn.Config(
                service.app(),
                host=config.http.host,
                port=config.http.port,
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        server.run()
        if not server.started:
            raise CentralError(f"cannot listen on {config.http.listen} (in use?)", EX_CONFIG)
    finally:
        service.stop()
        log.info("serve.stopped", **vars(service.ingest.counters))
