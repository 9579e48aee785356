"""Reference MCU on a pty: `McuFirmware` (firmware_bridge.mcu_firmware) run in a thread.

`McuSimulator` runs the firmware on the master side of a pty pair, so the agent's real
pyserial link talks to it exactly as to a board, and lets tests change the simulated
world (door, scales, tamper, leak) and look at the relay.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
import tty
from collections.abc import Callable

from firmware_bridge.codes import OutputId
from firmware_bridge.mcu_firmware import McuFirmware
from firmware_bridge.messages import Message


class PtyPair:
    """A raw pty pair: the simulator owns `master`, the code under test opens `path`."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline mangling 0x00 or 0x0A
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class McuSimulator:
    """Runs `McuFirmware` on a pty master fd in a thread. Safe to call from test threads."""

    TICK_S = 0.005

    def __init__(self, fd: int, firmware: McuFirmware | None = None) -> None:
        self._fd = fd
        self.firmware = firmware if firmware is not None else McuFirmware()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._hung = False
        self._thread: threading.Thread | None = None
        self.bytes_dropped = 0

    def start(self) -> None:
        os.set_blocking(self._fd, False)  # a UART with no listener loses bytes; so do we
        with self._lock:
            self._write(self.firmware.boot(_now_ms()))
        self._thread = threading.Thread(target=self._run, name="mcu-sim", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> McuSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the world, for tests and the manual console ------------------------------------

    def set_door(self, is_open: bool) -> None:
        self._do(lambda now: self.firmware.set_door(is_open, now))

    def set_tamper(self, is_open: bool) -> None:
        self._do(lambda now: self.firmware.set_tamper(is_open, now))

    def set_leak(self, wet: bool) -> None:
        self._do(lambda now: self.firmware.set_leak(wet, now))

    def set_weight(self, slot: int, mg: int) -> None:
        with self._lock:
            self.firmware.set_weight(slot, mg)

    def set_scale_fault(self, slot: int, active: bool) -> None:
        self._do(lambda now: self.firmware.set_scale_fault(slot, active, now))

    def jam_bolt(self, engaged: bool | None) -> None:
        self._do(lambda now: self.firmware.jam_bolt(engaged, now))

    def reboot(self) -> None:
        with self._lock:
            self._hung = False
            self._write(self.firmware.boot(_now_ms()))

    def hang(self) -> None:
        """The firmware stops dead: no frames in or out (a crashed MCU without watchdog)."""
        with self._lock:
            self._hung = True

    def inject_noise(self, data: bytes) -> None:
        """Raw bytes on the line towards the agent (EMI, a half-sent frame at reset)."""
        with self._lock:
            self._write(data)

    def drop_acks(self, count: int) -> None:
        with self._lock:
            self.firmware.drop_acks = count

    @property
    def relay_on(self) -> bool:
        return self.firmware.relay_on

    @property
    def failsafe_tripped(self) -> bool:
        return self.firmware.failsafe_tripped

    @property
    def outputs(self) -> dict[OutputId, bool]:
        with self._lock:
            return dict(self.firmware.outputs)

    @property
    def applied(self) -> list[Message]:
        with self._lock:
            return list(self.firmware.applied)

    # --- the thread -------------------------------------------------------------------

    def _do(self, change: Callable[[int], bytes]) -> None:
        with self._lock:
            if not self._hung:
                self._write(change(_now_ms()))

    def _run(self) -> None:
        while not self._stop.is_set():
            data = b""
            readable, _, _ = select.select([self._fd], [], [], self.TICK_S)
            if readable:
                try:
                    data = os.read(self._fd, 4096)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.EIO:  # EIO: nobody has the slave open right now
                        raise
                    time.sleep(self.TICK_S)
            with self._lock:
                if self._hung:
                    continue
                now = _now_ms()
                self._write(self.firmware.receive(data, now) + self.firmware.tick(now))

    def _write(self, data: bytes) -> None:
        # Held under the lock so frames from the thread and from test hooks never interleave.
        while data:
            try:
                written = os.write(self._fd, data)
            except (BlockingIOError, OSError):
                self.bytes_dropped += len(data)  # cut frames resync at the next delimiter
                return
            data = data[written:]
