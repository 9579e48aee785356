"""Run `cabinet-agent run` as a child process on a simulated cabinet, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.wire import VerifyKey, verify_chain

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "examples" / "scenarios"
POLICY = ROOT / "examples" / "policy.toml"


def sim_config(
    tmp: Path,
    broker_url: str,
    heartbeat_s: int = 60,
    stall_s: int = 20,
    central_pubkey: str | None = None,
) -> Path:
    """agent.toml for the simulated cabinet `cab-chem-0042` (site `lab`), state in tmp/state.

    `central_pubkey` (base64url, or the `pubkey <b64>` line `cabinetctl keygen` prints)
    pins the central key, so the agent accepts commands and policies signed with it.
    """
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    path = tmp / "agent.toml"
    text = (
        f'device = "cab-chem-0042"\nsite = "lab"\nstate_dir = "{state}"\nlog_format = "json"\n'
        f'[broker]\nurl = "{broker_url}"\n[health]\nheartbeat_s = {heartbeat_s}\n'
        f"watchdog_stall_s = {stall_s}\n[hardware.sim]\nenabled = true\n"
    )
    if central_pubkey is not None:
        key = central_pubkey.strip().removeprefix("pubkey ").strip()
        text += f'[keys]\ncentral_pubkey = "{key}"\n'
    path.write_text(text)
    return path


def keygen(tmp: Path) -> VerifyKey:
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "keygen", "--out", str(state / "device.key")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return VerifyKey.from_text(out)


class AgentProcess:
    def __init__(
        self,
        config: Path,
        scenario: str,
        speed: float = 20,
        exit_after: float | None = 2,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        args = [
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--config",
            str(config),
            "--policy",
            str(POLICY),
            "--scenario",
            str(SCENARIOS / scenario),
            "--speed",
            str(speed),
        ]
        if exit_after is not None:
            args += ["--exit-after-scenario", str(exit_after)]
        self.log = config.parent / f"agent-{time.monotonic_ns()}.log"
        self._log_handle = self.log.open("w")
        env = {**os.environ, **(extra_env or {})}
        env.pop("CABINET_BROKER_URL", None)
        env.pop("CABINET_STATE_DIR", None)
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=self._log_handle, stderr=subprocess.STDOUT, env=env
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log_handle.close()

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text()


def envelopes(messages: list, device: str = "cab-chem-0042") -> list[dict]:
    """Deduplicated envelopes (by seq) from recorded MQTT messages, in seq order."""
    by_seq: dict[int, dict] = {}
    for message in messages:
        if "/evt/" in message.topic:
            env = json.loads(message.payload)
            if env["device"] == device:
                by_seq[env["seq"]] = env
    return [by_seq[s] for s in sorted(by_seq)]


def verified(events: list[dict], key: VerifyKey) -> bool:
    report = verify_chain(events, key)
    return report.ok and report.events == len(events)
