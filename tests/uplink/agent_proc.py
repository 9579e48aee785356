"""A minimal agent process for crash tests: Outbox + Uplink, one event, then wait.

Usage: agent_proc.py STATE_DIR BROKER_CONFIG_JSON DEVICE SITE
Prints "connected" once the uplink is connected, "stopped" after a SIGTERM stop().
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from agent import wire
from agent.commands import CommandVerifier
from agent.nonces import NonceStore
from agent.outbox import Draft, Outbox
from agent.uplink import Uplink
from config.agent import AgentConfig, BrokerConfig


def main() -> int:
    state_dir, broker_json, device, site = sys.argv[1:5]
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    config = AgentConfig(
        device=device,
        site=site,
        state_dir=state,
        broker=BrokerConfig.model_validate_json(broker_json),
    )
    key = wire.SigningKey.generate()
    outbox = Outbox(state / "outbox.db", device, key)
    nonces = NonceStore(state / "nonces.db")
    verifier = CommandVerifier(device, wire.SigningKey.generate().public, nonces)
    uplink = Uplink(
        config,
        outbox,
        pubkey=key.public.to_text(),
        version="proc",
        boot=outbox.boot,
        post=lambda item: None,
        verifier=verifier,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    now = time.time_ns() // 1_000_000
    uplink.notify(
        outbox.append_batch(
            [
                Draft(
                    "system.started", "info", {"version": "proc", "boot": outbox.boot}, now, 0, True
                )
            ]
        )
    )
    uplink.start()
    while uplink.state != "connected":
        time.sleep(0.01)
    print("connected", flush=True)
    stop.wait()
    uplink.stop(timeout=5)
    outbox.close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
