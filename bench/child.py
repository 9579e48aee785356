"""`cabinet-agent run` as a child process, observed from outside like systemd would.

READY is taken from the daemon's own sd_notify datagram (a private $NOTIFY_SOCKET), RSS
and CPU from /proc, the event count from its outbox (read-only, WAL lets us read while
it writes). Optionally the whole process tree runs under `strace -f -c` restricted to
fsync/fdatasync (seccomp-bpf: only those syscalls stop, so strace barely slows it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.rig import POLICY, ROOT

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class ChildError(RuntimeError):
    pass


class DaemonChild:
    def __init__(
        self,
        broker_url: str,
        scenario: Path,
        *,
        speed: float = 1.0,
        strace: bool = False,
        program: Path | None = None,
    ):
        """`program`: an installed `cabinet-agent` (bench.target); default, this checkout."""
        self.dir = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
        self.state = self.dir / "state"
        self.state.mkdir()
        config = self.dir / "agent.toml"
        config.write_text(
            f'device = "cab-chem-0042"\nsite = "lab"\nstate_dir = "{self.state}"\n'
            f'log_format = "json"\n[broker]\nurl = "{broker_url}"\n'
            "[hardware.sim]\nenabled = true\n"
        )
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.dir / "notify"))
        self.notify.settimeout(0.2)
        self._ready_at: float | None = None
        self._ready = threading.Event()
        self._closing = False
        # Read every datagram like systemd does: an unread socket fills up, and then the
        # daemon's STATUS= updates block (or spin) in sendto, which is not what it costs.
        self._reader = threading.Thread(target=self._read_notify, name="notify", daemon=True)
        self._reader.start()
        self.strace_out = self.dir / "strace.txt" if strace else None
        if program is None:
            argv, cwd = [sys.executable, "-m", "agent.cli"], ROOT
        else:  # run from elsewhere, so that the checkout is not on its import path
            argv, cwd = [str(program)], self.dir
        argv += ["run", "--config", str(config)]
        argv += ["--policy", str(POLICY), "--scenario", str(scenario), "--speed", str(speed)]
        if self.strace_out is not None:
            strace_bin = shutil.which("strace")
            if strace_bin is None:
                raise ChildError("strace not found: apt-get install strace")
            argv = [
                strace_bin, "-f", "--seccomp-bpf", "-c", "-e", "trace=fsync,fdatasync",
                "-o", str(self.strace_out), *argv,
            ]  # fmt: skip
        env = {**os.environ, "NOTIFY_SOCKET": str(self.dir / "notify")}
        for name in ("CABINET_BROKER_URL", "CABINET_STATE_DIR", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
        self.log = (self.dir / "agent.log").open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )

    @property
    def pid(self) -> int:
        """The daemon's pid (strace's child when traced)."""
        if self.strace_out is None:
            return self.proc.pid
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        if not children.split():
            raise ChildError("strace has not started the daemon yet")
        return int(children.split()[0])

    def _read_notify(self) -> None:
        while not self._closing:
            try:
                message = self.notify.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            except OSError:
                return
            if self._ready_at is None and "READY=1" in message.split("\n"):
                self._ready_at = time.perf_counter()
                self._ready.set()

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds from spawn to the daemon's READY=1."""
        if not self._ready.wait(timeout) or self._ready_at is None:
            raise ChildError(f"no READY=1 within {timeout} s; log: {self.log_tail()}")
        return self._ready_at - self.started

    def rss_mb(self) -> float:
        fields = Path(f"/proc/{self.pid}/statm").read_text().split()
        return int(fields[1]) * PAGE_KB / 1024

    def cpu_s(self) -> float:
        """User + system CPU seconds of the daemon so far (all its threads)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def events(self) -> int:
        path = self.state / "outbox.db"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            (last,) = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            return int(last)
        finally:
            db.close()

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return code

    def fsyncs(self) -> int:
        """fsync + fdatasync calls of the whole run (after stop())."""
        if self.strace_out is None:
            raise ChildError("not traced")
        total = 0
        for line in self.strace_out.read_text().splitlines():
            match = re.match(
                r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)$", line
            )
            if match:
                total += int(match.group(1))
        return total

    def log_tail(self) -> str:
        self.log.flush()
        return (self.dir / "agent.log").read_text(errors="replace")[-2000:]

    def cleanup(self) -> None:
        self._closing = True
        self._reader.join(1)
        self.notify.close()
        shutil.rmtree(self.dir, ignore_errors=True)
