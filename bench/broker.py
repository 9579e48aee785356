"""A private mosquitto for one benchmark run: plain loopback listener, no persistence.

The benchmark owns its broker so that the raw paho baseline and the agent are measured
against the very same process in the same minute: every figure is a ratio to that
baseline, which is what makes numbers from a shared, noisy machine comparable.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"


class BrokerError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise BrokerError("mosquitto not found: apt-get install mosquitto")
    return found


class BenchBroker:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-broker-"))
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def start(self) -> BenchBroker:
        binary = mosquitto_binary()
        for _attempt in range(5):
            self.port = _free_port()
            conf = self.dir / "mosquitto.conf"
            conf.write_text(
                "\n".join(
                    line
                    for line in [
                        # As root mosquitto would drop to a user who cannot read our dir.
                        "user root" if os.geteuid() == 0 else "",
                        "persistence false",
                        "log_dest stderr",
                        "log_type error",
                        "set_tcp_nodelay true",
                        # The benchmark's own subscribers may lag behind a 100k drain.
                        "max_queued_messages 1000000",
                        f"listener {self.port} {HOST}",
                        "allow_anonymous true",
                    ]
                    if line
                )
                + "\n"
            )
            log = (self.dir / "mosquitto.log").open("ab")
            self._proc = subprocess.Popen(
                [binary, "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._proc.poll() is None:
                if _accepts(self.port):
                    return self
                time.sleep(0.01)
            self.stop()  # port taken meanwhile, or a slow start: try another port
        raise BrokerError(f"mosquitto did not start; see {self.dir / 'mosquitto.log'}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> BenchBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
