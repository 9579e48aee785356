"""A real PC/SC stack for tests: pcscd + vsmartcard's vpcd (two readers) + virtual cards.

`PcscDaemon.shared(tmp_dir)` starts one pcscd for the whole process (the socket is
always /run/pcscd/pcscd.comm, so there can be only one per host); a file lock keeps two
test sessions on one machine from fighting over it. `VirtualCard(uid, port)` is a card
put on a vpcd reader: it speaks the vpcd protocol over TCP and answers GET DATA with its
UID. Reusable by any test module: see tests/drivers/conftest.py for the fixtures.
"""

from __future__ import annotations

import contextlib
import fcntl
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

READER_NAMES = ("Virtual PCD 00 00", "Virtual PCD 00 01")
CARD_PORTS = {"A": 35963, "B": 35964}  # vpcd's card ports for readers 00 00 and 00 01
VPCD_LIBRARY = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
HOST_LOCK = Path("/tmp/cabinet-agent-tests-pcscd.lock")
ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def listed_readers() -> list[str]:
    """The readers pcscd lists right now ([] when it is not reachable)."""
    from smartcard import scard

    hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != scard.SCARD_S_SUCCESS:
        return []
    try:
        hr, names = scard.SCardListReaders(context, [])
        return list(names) if hr == scard.SCARD_S_SUCCESS else []
    finally:
        scard.SCardReleaseContext(context)


def card_seen(reader: str) -> bool:
    """Whether pcscd itself reports a card on reader "A" or "B" right now."""
    from smartcard import scard

    hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != scard.SCARD_S_SUCCESS:
        return False
    try:
        name = READER_NAMES[0 if reader == "A" else 1]
        hr, states = scard.SCardGetStatusChange(context, 0, [(name, scard.SCARD_STATE_UNAWARE)])
        return hr == scard.SCARD_S_SUCCESS and bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(context)


class PcscDaemon:
    _shared: PcscDaemon | None = None
    _users = 0

    def __init__(self, binary: str, work_dir: Path) -> None:
        self.binary = binary
        self.config_dir = work_dir / "pcscd.conf.d"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "vpcd").write_text(
            'FRIENDLYNAME "Virtual PCD"\n'
            "DEVICENAME   /dev/null:0x8C7B\n"
            f"LIBPATH      {VPCD_LIBRARY}\n"
            "CHANNELID    0x8C7B\n"
        )
        self.log_path = work_dir / "pcscd.log"
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._host_lock: IO[bytes] | None = None

    # -- one per process, one per host ---------------------------------------------

    @classmethod
    def shared(cls, binary: str, work_dir: Path) -> PcscDaemon:
        if cls._shared is None:
            daemon = cls(binary, work_dir)
            daemon._lock_host()
            try:
                daemon.start()
            except BaseException:
                daemon._unlock_host()
                raise
            cls._shared = daemon
        cls._users += 1
        return cls._shared

    @classmethod
    def release_shared(cls) -> None:
        cls._users -= 1
        if cls._users == 0 and cls._shared is not None:
            daemon, cls._shared = cls._shared, None
            try:
                daemon.stop()
            finally:
                daemon._unlock_host()

    def _lock_host(self, timeout: float = 300) -> None:
        self._host_lock = HOST_LOCK.open("wb")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._host_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another test session holds {HOST_LOCK}") from None
                time.sleep(0.2)

    def _unlock_host(self) -> None:
        if self._host_lock is not None:
            fcntl.flock(self._host_lock, fcntl.LOCK_UN)
            self._host_lock.close()
            self._host_lock = None

    # -- life cycle ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        if _socket_answers():
            raise RuntimeError(
                "a pcscd that is not ours is running (systemd's pcscd.socket?); stop it first"
            )
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [self.binary, "--foreground", "--config", str(self.config_dir)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: not self.running or set(READER_NAMES) <= set(listed_readers()),
                timeout=10,
                what="pcscd to list both vpcd readers",
            )
        except TimeoutError:
            self.stop()
            raise
        if not self.running:
            raise RuntimeError(f"pcscd exited at start; see {self.log_path}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _socket_answers() -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(PCSCD_SOCKET))
        except OSError:
            return False
        return True


class VirtualCard:
    """A contactless card lying on a vpcd reader while `present()`ed."""

    def __init__(self, uid: str, port: int) -> None:
        self.uid = bytes.fromhex(uid)
        self.port = port
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.uid_reads = 0  # GET DATA answered
        self.presence_polls = 0  # pcscd asking for the ATR (it does so every poll cycle)

    def present(self, timeout: float = 5.0) -> None:
        """Put the card on the reader (connect to vpcd, retrying while pcscd starts)."""
        self.remove()
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.settimeout(None)
        self._socket = sock
        self._thread = threading.Thread(target=self._answer, args=(sock,), daemon=True)
        self._thread.start()

    def remove(self) -> None:
        """Lift the card off the reader."""
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def on_reader(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _answer(self, sock: socket.socket) -> None:
        try:
            while True:
                request = _receive(sock)
                if request is None:
                    return  # pcscd went away, or remove()
                reply = self._reply(request)
                if reply is not None:
                    sock.sendall(struct.pack(">H", len(reply)) + reply)
        except OSError:
            return

    def _reply(self, request: bytes) -> bytes | None:
        if len(request) == 1:  # vpcd control: 0 off, 1 on, 2 reset, 4 ATR
            if request[0] == 0x04:
                with self._lock:
                    self.presence_polls += 1
                return ATR
            return None
        if request[:4] == bytes([0xFF, 0xCA, 0x00, 0x00]):
            with self._lock:
                self.uid_reads += 1
            return self.uid + bytes([0x90, 0x00])
        return bytes([0x6D, 0x00])  # instruction not supported


def _receive(sock: socket.socket) -> bytes | None:
    header = _exactly(sock, 2)
    if header is None:
        return None
    (length,) = struct.unpack(">H", header)
    return _exactly(sock, length)


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
