"""A cabinet without hardware for uplink tests: an outbox, a fake core, the uplink.

`Rig.emit` does what the core does after each commit: append a batch to the outbox (the
one writer) and `notify` the uplink.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import wire
from agent.commands import CommandVerifier
from agent.nonces import NonceStore
from agent.outbox import Draft, Outbox
from agent.uplink import Uplink
from config.agent import AgentConfig, BrokerConfig
from rules.inputs import AnyInput
from tests.support.broker import Broker

DEVICE = "cab-1"
SITE = "lab"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def broker_config(broker: Broker, *, tls: bool = False, **options: Any) -> BrokerConfig:
    values: dict[str, Any] = {"url": broker.url, "reconnect_min_s": 1, "reconnect_max_s": 2}
    if tls:
        cert = broker.client_cert(DEVICE)
        values.update(url=broker.tls_url, ca_file=broker.ca, cert_file=cert.cert, key_file=cert.key)
    values.update(options)
    return BrokerConfig(**values)


def draft(type_: str = "access.granted", sev: str = "info", **data: Any) -> Draft:
    now = time.time_ns() // 1_000_000
    return Draft(type_, sev, data or {"n": 1}, now, int(time.monotonic() * 1000), True)


def topic(kind: str) -> str:
    return f"cabinet/{SITE}/{DEVICE}/{kind}"


@dataclass
class Rig:
    config: AgentConfig
    outbox: Outbox
    uplink: Uplink
    nonces: NonceStore
    device_key: wire.SigningKey
    central_key: wire.SigningKey
    posted: list[AnyInput] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def emit(self, *drafts: Draft) -> list[wire.Envelope]:
        envelopes = self.outbox.append_batch(list(drafts))
        self.uplink.notify(envelopes)
        return envelopes

    def post(self, item: AnyInput) -> None:
        with self.lock:
            self.posted.append(item)

    def inputs(self) -> list[AnyInput]:
        with self.lock:
            return list(self.posted)

    def command(
        self,
        name: str,
        args: dict[str, Any],
        *,
        device: str = DEVICE,
        expires_in_ms: int = 60_000,
        nonce: str | None = None,
        key: wire.SigningKey | None = None,
    ) -> bytes:
        now = time.time_ns() // 1_000_000
        doc = wire.build_command(
            device=device,
            name=name,
            args=args,
            nonce=nonce or uuid.uuid4().hex,
            issued_at_ms=min(now, now + expires_in_ms - 1000),
            expires_at_ms=now + expires_in_ms,
            key=key or self.central_key,
        )
        return json.dumps(doc).encode()

    def close(self) -> None:
        self.uplink.stop(timeout=5)
        self.outbox.close()
        self.nonces.close()


def make_rig(state_dir: Path, broker_cfg: BrokerConfig, **uplink_options: Any) -> Rig:
    state_dir.mkdir(parents=True, exist_ok=True)
    config = AgentConfig(device=DEVICE, site=SITE, state_dir=state_dir, broker=broker_cfg)
    device_key = wire.SigningKey.generate()
    central_key = wire.SigningKey.generate()
    outbox = Outbox(state_dir / "outbox.db", DEVICE, device_key)
    nonces = NonceStore(state_dir / "nonces.db")
    verifier = CommandVerifier(DEVICE, central_key.public, nonces)
    posted: list[AnyInput] = []
    lock = threading.Lock()

    def post(item: AnyInput) -> None:
        with lock:
            posted.append(item)

    uplink = Uplink(
        config,
        outbox,
        pubkey=device_key.public.to_text(),
        version="test",
        boot=outbox.boot,
        post=post,
        verifier=verifier,
        **uplink_options,
    )
    return Rig(config, outbox, uplink, nonces, device_key, central_key, posted, lock)


def seqs_of(payloads: list[bytes]) -> list[int]:
    return [int(json.loads(p)["seq"]) for p in payloads]
