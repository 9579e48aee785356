"""The daemon pets systemd's watchdog only while its loops make progress."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.daemon import Daemon, RunOptions
from config.agent import load_agent_config
from rules import inputs as i
from tests.daemon.agent_process import POLICY, keygen, sim_config


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.extend((time.monotonic(), line) for line in data.splitlines())

    def since(self, t: float, text: str) -> int:
        return sum(1 for at, line in list(self.messages) if at >= t and line == text)

    def wait(self, text: str, timeout: float, *, count: int = 1, after: float = 0) -> None:
        """Until `count` datagram lines equal to `text` arrived at or after `after`."""
        self.wait_for(lambda line: line == text, timeout, count=count, after=after)

    def wait_for(
        self, match: Callable[[str], bool], timeout: float, *, count: int = 1, after: float = 0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for at, line in list(self.messages) if at >= after and match(line)) >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"not {count} such lines within {timeout} s: {self.messages[-5:]}")

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


def test_ready_then_watchdog_pets_and_a_stalled_core_stops_them(tmp_path, make_broker, monkeypatch):
    broker = make_broker()
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # pet every 0.1 s
    keygen(tmp_path)
    config = load_agent_config(sim_config(tmp_path, broker.url, stall_s=1))
    daemon = Daemon(config, RunOptions(tmp_path / "agent.toml", POLICY))
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        notify.wait("READY=1", 10)
        # A healthy daemon pets the watchdog (every 0.1 s asked; 5 within 5 s is lenient).
        notify.wait("WATCHDOG=1", 5, count=5, after=time.monotonic())

        release = threading.Event()
        real_step = daemon.rules.step

        def stuck_step(item: i.AnyInput, now):  # type: ignore[no-untyped-def]
            if isinstance(item, i.Tick):
                release.wait(30)  # the core thread hangs here, like a deadlock would
            return real_step(item, now)

        monkeypatch.setattr(daemon.rules, "step", stuck_step)
        daemon.core.post(i.Tick())
        # stall_s = 1: the core stops beating, and the daemon says so in its STATUS.
        notify.wait_for(lambda line: "stalled" in line and "core" in line, 10)
        t1 = time.monotonic()
        time.sleep(1.0)  # an absence can only be seen over a stretch of time
        assert notify.since(t1, "WATCHDOG=1") == 0, "a stuck core must stop the petting"

        release.set()
        # Petting resumes when the core recovers.
        notify.wait("WATCHDOG=1", 10, count=3, after=time.monotonic())
    finally:
        daemon.stop_requested.set()
        runner.join(10)
        notify.close()
    assert not runner.is_alive()
    assert any(line == "STOPPING=1" for _, line in notify.messages)


@pytest.mark.parametrize("missing", ["device key"])
def test_a_real_cabinet_without_a_provisioned_key_refuses_to_start(tmp_path, missing):
    import subprocess
    import sys

    from tests.daemon.agent_process import ROOT

    config = tmp_path / "agent.toml"
    config.write_text(
        f'device = "cab-1"\nsite = "lab"\nstate_dir = "{tmp_path / "s"}"\n'
        '[hardware.gpio]\npin_factory = "mock"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert proc.returncode == 78
    assert "no device key" in proc.stderr and "keygen" in proc.stderr
