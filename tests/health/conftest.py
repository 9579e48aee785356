"""A stand-in for systemd's notify socket: a real AF_UNIX datagram socket the test reads,
with SO_PASSCRED on, as PID 1 has it, so tests see which process sent each message."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Notification:
    lines: tuple[str, ...]
    pid: int  # from SCM_CREDENTIALS: what systemd checks for NotifyAccess=main

    @property
    def fields(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.lines)


class NotifySocket:
    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value  # what $NOTIFY_SOCKET would hold

    def receive(self, timeout: float) -> Notification | None:
        self.sock.settimeout(timeout)
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(
                4096, socket.CMSG_SPACE(struct.calcsize("3i"))
            )
        except TimeoutError:
            return None
        pid = -1
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("3i", payload[: struct.calcsize("3i")])
        return Notification(tuple(data.decode("utf-8").split("\n")), pid)

    def wait_for(self, line: str, timeout: float = 3.0) -> Notification:
        """The first notification holding `line`, skipping others; fails on timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.receive(left)
            if got is not None and line in got.lines:
                return got
        pytest.fail(f"no {line!r} on the notify socket within {timeout} s")

    def drain(self) -> list[Notification]:
        out = []
        while (got := self.receive(0.0001)) is not None:
            out.append(got)
        return out

    def count_within(self, line: str, seconds: float) -> int:
        """How many notifications holding `line` arrive in the next `seconds`."""
        deadline = time.monotonic() + seconds
        count = 0
        while (left := deadline - time.monotonic()) > 0:
            got = self.receive(left)
            if got is not None and line in got.lines:
                count += 1
        return count


def _open(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(address)
    return sock


@pytest.fixture
def abstract_notify_socket() -> Iterator[NotifySocket]:
    name = f"cabinet-agent-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = _open("\0" + name)
    try:
        yield NotifySocket(sock, "@" + name)
    finally:
        sock.close()


@pytest.fixture
def path_notify_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifySocket]:
    # sun_path holds 108 bytes; pytest's tmp paths can be long, so keep this one short.
    path = tmp_path_factory.mktemp("ntf") / "n"
    if len(os.fsencode(path)) >= 108:
        path = tmp_path_factory.getbasetemp() / f"n{os.getpid()}"
    sock = _open(str(path))
    try:
        yield NotifySocket(sock, str(path))
    finally:
        sock.close()
