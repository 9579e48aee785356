"""agent/clocksync.py: the kernel is asked for real; the verdict is tested sans-I/O."""

from __future__ import annotations

import ctypes

import pytest

from agent import clocksync
from agent.clocksync import (
    MAXERROR_LIMIT_US,
    STA_UNSYNC,
    TIME_ERROR,
    KernelClockState,
    clock_synchronized,
    is_synchronized,
    read_kernel_clock,
    status_flags,
)

STA_PLL = 0x0001
STA_NANO = 0x2000


def test_the_kernel_answers_on_this_machine() -> None:
    assert isinstance(clock_synchronized(), bool)
    state = read_kernel_clock()
    assert state is not None
    # The kernel clamps maxerror at its 16 s ceiling; anything else means a wrong layout.
    assert 0 <= state.maxerror_us <= MAXERROR_LIMIT_US
    assert 0 <= state.state <= TIME_ERROR
    assert state.synchronized is (state.maxerror_us < MAXERROR_LIMIT_US)


def test_struct_timex_matches_the_c_layout() -> None:
    # glibc's struct timex: 208 bytes with 64-bit longs, 128 with 32-bit (armhf Pi OS).
    expected = {8: 208, 4: 128}[ctypes.sizeof(ctypes.c_long)]
    assert ctypes.sizeof(clocksync._Timex) == expected


def test_a_freshly_booted_pi_is_not_synchronised() -> None:
    # What a Pi reports before NTP: kernel defaults, fake-hwclock's date notwithstanding.
    boot = KernelClockState(
        state=TIME_ERROR, status=STA_UNSYNC, maxerror_us=16_000_000, esterror_us=16_000_000
    )
    assert not boot.synchronized
    assert boot.log_fields()["kernel_state"] == "TIME_ERROR"
    assert boot.log_fields()["flags"] == "UNSYNC"


def test_timesyncd_synchronised_clock() -> None:
    synced = KernelClockState(state=0, status=STA_PLL, maxerror_us=41_000, esterror_us=300)
    assert synced.synchronized


def test_chrony_without_rtcsync_counts_as_synchronised_despite_sta_unsync() -> None:
    # chrony keeps STA_UNSYNC (hence TIME_ERROR) set so the kernel never writes an RTC,
    # while reporting a small maxerror: timedatectl says synchronised, and so do we.
    chrony = KernelClockState(
        state=TIME_ERROR,
        status=STA_UNSYNC | STA_PLL | STA_NANO,
        maxerror_us=12_000,
        esterror_us=50,
    )
    assert chrony.synchronized
    assert chrony.flags == ("PLL", "UNSYNC", "NANO")


@pytest.mark.parametrize(
    ("maxerror_us", "synced"),
    [
        (0, True),
        (MAXERROR_LIMIT_US - 1, True),
        (MAXERROR_LIMIT_US, False),  # the ceiling: NTP has been silent for ~9 hours
        (-1, False),
    ],
)
def test_maxerror_decides(maxerror_us: int, synced: bool) -> None:
    assert is_synchronized(maxerror_us) is synced


def test_status_bits_are_named_in_bit_order() -> None:
    assert status_flags(0) == ()
    assert status_flags(0x0041) == ("PLL", "UNSYNC")
    assert status_flags(0xFFFF)[0] == "PLL"
    assert status_flags(0xFFFF)[-1] == "CLK"
    assert len(status_flags(0xFFFF)) == 16


def test_a_refused_system_call_means_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(_buf: object) -> int:
        ctypes.set_errno(1)  # EPERM, as a seccomp filter with SystemCallErrorNumber=EPERM
        return -1

    monkeypatch.setattr(clocksync, "_ADJTIMEX", refused)
    assert clock_synchronized() is None
