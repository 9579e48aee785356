"""The uplink's doorbell: a commit landing while the uplink wakes up is never lost."""

from __future__ import annotations

import select
import threading

from agent.doorbell import Doorbell


class _RingDuringRead:
    """The bell's socket, with the core's ring landing exactly while the uplink reads it."""

    def __init__(self, bell: Doorbell) -> None:
        self._doorbell, self._socket = bell, bell._bell

    def recv(self, size: int) -> bytes:
        self._doorbell.ring()
        return self._socket.recv(size)


def woken(bell: Doorbell, within_s: float = 2.0) -> bool:
    return bool(select.select([bell], [], [], within_s)[0])


def test_a_ring_racing_with_the_answer_leaves_the_next_ring_able_to_wake() -> None:
    bell = Doorbell()
    try:
        bell.ring()
        assert woken(bell)
        real = bell._bell
        bell._bell = _RingDuringRead(bell)  # type: ignore[assignment]
        bell.answer()
        bell._bell = real
        # The racing ring's work is handled right after answer(); what matters is that
        # the next commit still wakes the uplink instead of leaving it on its timeout.
        bell.ring()
        assert woken(bell), "a later ring was swallowed: the uplink would poll for ever"
    finally:
        bell.close()


def test_rings_from_another_thread_always_wake_the_sleeper() -> None:
    bell = Doorbell()
    rings, done = 2000, threading.Event()
    missed = 0

    def core() -> None:
        for _ in range(rings):
            bell.ring()
        done.set()

    ringer = threading.Thread(target=core)
    ringer.start()
    try:
        while not done.is_set():
            if woken(bell, 1.0):
                bell.answer()
            elif not done.is_set():
                missed += 1
        ringer.join()
        bell.ring()
        assert woken(bell) and missed == 0
    finally:
        bell.close()


def test_ringing_twice_before_the_answer_costs_one_wake_up() -> None:
    bell = Doorbell()
    try:
        bell.ring()
        bell.ring()
        assert woken(bell)
        bell.answer()
        assert not woken(bell, 0.0)
    finally:
        bell.close()
