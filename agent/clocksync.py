"""Is the wall clock synchronised? Asked of the kernel, never guessed from the date.

Why it matters: a Raspberry Pi has no battery-backed RTC. After a power cut it boots with
the time fake-hwclock saved at the last shutdown (or the image's build date), which can be
days or months behind, until an NTP daemon fixes it; a cabinet in a basement lab may stay
offline for hours. Every event carries `clock_ok` (docs/protocol.md, "Envelope") so the centre knows
which `ts` values it can trust, and an unsynchronised start raises `clock_unsynced`.
A plausible-looking date proves nothing, because fake-hwclock makes every date plausible.

How: the NTP daemon (systemd-timesyncd on Raspberry Pi OS, or chrony) reports its state
to the kernel through adjtimex(2), and a read-only call (modes = 0, no privilege needed)
returns it. The verdict follows systemd-timedated, which is what `timedatectl` prints as
"System clock synchronized": the kernel's maximum error estimate must be below its 16 s
ceiling (NTP_PHASE_LIMIT). The kernel adds 500 ppm to that estimate every second and
clamps it at the ceiling, setting STA_UNSYNC when it gets there, so a clock left alone
for about 9 hours counts as unsynchronised again. The STA_UNSYNC bit alone is not the
verdict: chrony keeps it set while synchronised when the kernel must not copy the time
into an RTC (chrony's `rtcsync` off), and timedated ignores it for that reason. The
status bits and the TIME_ERROR return are kept in `KernelClockState` for the logs.

The agent's unit lets exactly this system call through its seccomp filter
(systemd/cabinet-agent.service); where it is refused, the answer is None (unknown),
which the caller treats like "not synchronised".
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from agent.periodic import Periodic
from rules.inputs import ClockStatus

log = structlog.get_logger("clocksync")

# <sys/timex.h>: the clock state adjtimex returns when the kernel thinks it is unsynced,
# and the status bits, named for the logs.
TIME_ERROR: Final = 5
STA_UNSYNC: Final = 0x0040
STATUS_BITS: Final = (
    (0x0001, "PLL"),
    (0x0002, "PPSFREQ"),
    (0x0004, "PPSTIME"),
    (0x0008, "FLL"),
    (0x0010, "INS"),
    (0x0020, "DEL"),
    (STA_UNSYNC, "UNSYNC"),
    (0x0080, "FREQHOLD"),
    (0x0100, "PPSSIGNAL"),
    (0x0200, "PPSJITTER"),
    (0x0400, "PPSWANDER"),
    (0x0800, "PPSERROR"),
    (0x1000, "CLOCKERR"),
    (0x2000, "NANO"),
    (0x4000, "MODE"),
    (0x8000, "CLK"),
)
# The kernel's ceiling for maxerror, in microseconds (NTP_PHASE_LIMIT): at or above it the
# clock is unsynchronised. Same constant as systemd-timedated's ntp_synced().
MAXERROR_LIMIT_US: Final = 16_000_000


class _Timex(ctypes.Structure):
    """glibc's struct timex. `long` and `time_t` are the C long of the legacy `adjtimex`
    symbol on both 64-bit and 32-bit Raspberry Pi OS, which ctypes' c_long matches."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        # The kernel ABI reserves eleven more ints; the kernel writes them, so they must
        # be part of the buffer.
        ("_reserved", ctypes.c_int * 11),
    )


@dataclass(frozen=True, slots=True)
class KernelClockState:
    """What adjtimex reported: its return value and the fields that decide sync."""

    state: int  # TIME_OK .. TIME_ERROR
    status: int  # STA_* bits
    maxerror_us: int
    esterror_us: int

    @property
    def synchronized(self) -> bool:
        return is_synchronized(self.maxerror_us)

    @property
    def flags(self) -> tuple[str, ...]:
        return status_flags(self.status)

    def log_fields(self) -> dict[str, object]:
        return {
            "synchronized": self.synchronized,
            "maxerror_us": self.maxerror_us,
            "esterror_us": self.esterror_us,
            "kernel_state": "TIME_ERROR" if self.state == TIME_ERROR else self.state,
            "flags": ",".join(self.flags),
        }


def is_synchronized(maxerror_us: int) -> bool:
    """The verdict from adjtimex's answer (sans-I/O, so it is tested without a kernel).

    Only maxerror decides; the module docstring says why STA_UNSYNC and TIME_ERROR
    alone would call a chrony-synced clock unsynchronised.
    """
    return 0 <= maxerror_us < MAXERROR_LIMIT_US


def status_flags(status: int) -> tuple[str, ...]:
    """Names of the STA_* bits set in `status`, in bit order."""
    return tuple(name for bit, name in STATUS_BITS if status & bit)


def _load_adjtimex() -> Callable[[Any], int] | None:
    # dlopen(NULL): the symbols already loaded into this process, libc among them. Not
    # ctypes.util.find_library("c"), which runs ldconfig in a subprocess at every start and
    # imports shutil, tempfile and the compression modules for it.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    for symbol in ("adjtimex", "ntp_adjtime"):  # same call; musl and glibc name it so
        func = getattr(libc, symbol, None)
        if func is not None:
            func.argtypes = (ctypes.POINTER(_Timex),)
            func.restype = ctypes.c_int
            call: Callable[[Any], int] = func
            return call
    return None


_ADJTIMEX = _load_adjtimex()
_warned_unavailable = False


def read_kernel_clock() -> KernelClockState | None:
    """One read-only adjtimex call; None when the kernel cannot be asked."""
    if _ADJTIMEX is None:
        return None
    tx = _Timex()  # modes = 0: read, change nothing
    state = int(_ADJTIMEX(ctypes.byref(tx)))
    if state < 0:
        err = ctypes.get_errno()
        global _warned_unavailable
        if not _warned_unavailable:  # the core asks per event: say it once
            _warned_unavailable = True
            # EPERM means a seccomp filter without clock_adjtime (e.g. ProtectClock=yes).
            log.warning("clocksync.unavailable", errno=err, error=os.strerror(err))
        return None
    return KernelClockState(
        state=state,
        status=int(tx.status),
        maxerror_us=int(tx.maxerror),
        esterror_us=int(tx.esterror),
    )


def clock_synchronized() -> bool | None:
    """True when the wall clock is NTP-synchronised, False when not, None when unknown.

    Cheap (one system call), so the core may ask for every event it stamps.
    """
    state = read_kernel_clock()
    return None if state is None else state.synchronized


class ClockWatch(Periodic):
    """Checks the clock every `period_s`; posts `ClockStatus` to the core when it changes.

    `ok` is what the core stamps as `clock_ok` on every event (read from the core
    thread; a bool written by one thread and read by another needs no lock).
    """

    def __init__(
        self,
        post: Callable[[ClockStatus], None],
        *,
        period_s: float = 60.0,
        probe: Callable[[], bool | None] = clock_synchronized,
    ) -> None:
        self._post, self._probe = post, probe
        self.ok = bool(probe())
        super().__init__("clock-watch", period_s, self.check)

    def check(self) -> None:
        synced = bool(self._probe())
        if synced != self.ok:
            self.ok = synced
            state = read_kernel_clock()
            details = state.log_fields() if state is not None else {}
            log.info("clock.sync_changed", **{**details, "synchronized": synced})
            self._post(ClockStatus(synced))
