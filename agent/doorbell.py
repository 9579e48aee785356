"""Waking a thread that sleeps in select(), from any other thread, with one byte.

The uplink sleeps in `select()` on the broker's socket and this doorbell's; the core
rings after every commit. Ringing costs a system call, so it is skipped while a ring is
already pending (`_rung`). The order inside `answer` is what makes that safe: the bytes
are read *first* and the flag cleared after. A ring that lands in between finds the
flag still set and sends nothing, but the caller handles its work right after
`answer` returns, so it is not lost; a ring after the flag is cleared sends a byte.
(Clearing first, then reading, lets the read swallow such a ring's byte with the flag
left set: every later ring is then skipped and the sleeper only wakes on its timeout.)
"""

from __future__ import annotations

import contextlib
import socket


class Doorbell:
    def __init__(self) -> None:
        self._bell, self._ringer = socket.socketpair()
        self._bell.setblocking(False)
        self._ringer.setblocking(False)
        self._rung = False

    def fileno(self) -> int:
        """select() on this: readable once rung."""
        return self._bell.fileno()

    def ring(self) -> None:
        """Any thread: wake the sleeper (cheap when a ring is already pending)."""
        if not self._rung:
            self._rung = True
            with contextlib.suppress(OSError):  # buffer full: a wake-up is pending anyway
                self._ringer.send(b"\0")

    def answer(self) -> None:
        """The sleeper, once woken: take the pending rings, then re-arm (in that order)."""
        with contextlib.suppress(OSError):
            self._bell.recv(4096)
        self._rung = False

    def close(self) -> None:
        self._bell.close()
        self._ringer.close()
