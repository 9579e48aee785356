"""Reader unplug/replug and card swaps, against a scripted stand-in for smartcard.scard.

vpcd's readers come from pcscd's config and cannot be unplugged while pcscd runs, so
these paths are driven through a fake of the PC/SC calls the driver makes, with the
semantics pcsc-lite documents (event counter in the upper 16 bits, UNKNOWN for a reader
that is gone, the PnP pseudo-reader changing when the reader list does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from config.hardware import ReadersConfig
from rules.inputs import Badge, ReaderFault, ReaderRecovered
from tests.drivers.recorder import Inbox, wait_until
from tests.realparts import require_module

READER_A, READER_B = "ACS ACR122U 00 00", "ACS ACR122U 01 00"
PNP = "\\\\?PnP?\\Notification"


class FakePcsc:
    def __init__(self, real: ModuleType) -> None:
        self._real = real
        self._cond = threading.Condition()
        self._cancelled = False
        self._plugged: dict[str, int] = {READER_A: 0, READER_B: 0}  # name -> event count
        self._cards: dict[str, str] = {}
        self._pnp_events = 0
        self.settled: set[str] = set()  # readers the driver has seen once (past its baseline)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)  # constants, SCardGetErrorMessage

    # -- what the test does to the hardware --------------------------------------------

    def unplug(self, reader: str) -> None:
        with self._cond:
            del self._plugged[reader]
            self._cards.pop(reader, None)
            self._pnp_events += 1
            self._cond.notify_all()

    def plug(self, reader: str) -> None:
        with self._cond:
            self._plugged[reader] = 0
            self._pnp_events += 1
            self._cond.notify_all()

    def put_card(self, reader: str, uid: str, missed_removal: bool = False) -> None:
        with self._cond:
            # A lift-and-put-back between two polls: removal and insertion both counted.
            self._plugged[reader] += 2 if missed_removal else 1
            self._cards[reader] = uid
            self._cond.notify_all()

    # -- the PC/SC calls the driver makes ----------------------------------------------

    def SCardEstablishContext(self, scope: int) -> tuple[int, int]:
        return self._real.SCARD_S_SUCCESS, 1

    def SCardReleaseContext(self, context: int) -> int:
        return self._real.SCARD_S_SUCCESS

    def SCardCancel(self, context: int) -> int:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()
        return self._real.SCARD_S_SUCCESS

    def SCardListReaders(self, context: int, groups: list[str]) -> tuple[int, list[str]]:
        with self._cond:
            names = list(self._plugged)
        if not names:
            return self._real.SCARD_E_NO_READERS_AVAILABLE, []
        return self._real.SCARD_S_SUCCESS, names

    def _state(self, name: str) -> int:
        s = self._real
        if name == PNP:
            return self._pnp_events << 16
        if name not in self._plugged:
            return s.SCARD_STATE_UNKNOWN
        present = s.SCARD_STATE_PRESENT if name in self._cards else s.SCARD_STATE_EMPTY
        return (self._plugged[name] << 16) | present

    def SCardGetStatusChange(
        self, context: int, timeout_ms: int, states: list[tuple[str, int]]
    ) -> tuple[int, list[tuple[str, int, list[int]]]]:
        s = self._real
        deadline = time.monotonic() + timeout_ms / 1000
        with self._cond:
            self.settled = {name for name, current in states if current != s.SCARD_STATE_UNAWARE}
            while True:
                if self._cancelled:
                    self._cancelled = False
                    return s.SCARD_E_CANCELLED, []
                now = [(name, self._state(name), current) for name, current in states]
                if any(state != current & ~s.SCARD_STATE_CHANGED for _, state, current in now):
                    return s.SCARD_S_SUCCESS, [
                        (name, state | (s.SCARD_STATE_CHANGED if state != current else 0), [])
                        for name, state, current in now
                    ]
                left = deadline - time.monotonic()
                if left <= 0:
                    return s.SCARD_E_TIMEOUT, []
                self._cond.wait(left)

    def SCardConnect(
        self, context: int, reader: str, share: int, protocols: int
    ) -> tuple[int, str, int]:
        with self._cond:
            if reader not in self._cards:
                return self._real.SCARD_W_REMOVED_CARD, "", 0
        return self._real.SCARD_S_SUCCESS, reader, self._real.SCARD_PROTOCOL_T1

    def SCardTransmit(self, card: str, protocol: int, apdu: list[int]) -> tuple[int, list[int]]:
        with self._cond:
            uid = self._cards[card]
        return self._real.SCARD_S_SUCCESS, [*bytes.fromhex(uid), 0x90, 0x00]

    def SCardDisconnect(self, card: str, disposition: int) -> int:
        return self._real.SCARD_S_SUCCESS


@pytest.fixture
def pcsc(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakePcsc, Inbox]]:
    require_module("smartcard", "pip install pyscard")
    from smartcard import scard

    import drivers.pcsc
    from drivers.pcsc import PcscReaders

    fake = FakePcsc(scard)
    monkeypatch.setattr(drivers.pcsc, "scard", fake)
    driver = PcscReaders(ReadersConfig(a_pattern="00 00$", b_pattern="01 00$"))
    inbox = Inbox()
    driver.start(inbox.post)
    # A card put down before the loop first looked is "already there", not a badge.
    wait_until(lambda: {READER_A, READER_B} <= fake.settled, what="the loop to watch A and B")
    yield fake, inbox
    driver.close()


def test_an_unplugged_reader_is_a_fault_until_it_is_plugged_back(
    pcsc: tuple[FakePcsc, Inbox],
) -> None:
    fake, inbox = pcsc
    fake.put_card(READER_A, "04A1B2C3D4E5F6")
    inbox.wait_for_item(Badge("A", "04A1B2C3D4E5F6"))

    fake.unplug(READER_B)
    at = inbox.wait_for(lambda xs: any(isinstance(x, ReaderFault) for x in xs))
    fault = next(x for x in at if isinstance(x, ReaderFault))
    assert fault.reader == "B"

    fake.put_card(READER_A, "04FFEEDDCCBBAA")  # A keeps working meanwhile
    inbox.wait_for_item(Badge("A", "04FFEEDDCCBBAA"))

    fake.plug(READER_B)
    back = inbox.wait_for_item(ReaderRecovered("B"))
    fake.put_card(READER_B, "04CAFEBABE0001")
    inbox.wait_for_item(Badge("B", "04CAFEBABE0001"), after=back)
    assert [x for x in inbox.snapshot() if isinstance(x, ReaderFault)] == [fault]


def test_a_card_swapped_between_two_polls_is_a_new_badge(pcsc: tuple[FakePcsc, Inbox]) -> None:
    fake, inbox = pcsc
    fake.put_card(READER_A, "04A1B2C3D4E5F6")
    inbox.wait_for_item(Badge("A", "04A1B2C3D4E5F6"))
    fake.put_card(READER_A, "04FFEEDDCCBBAA", missed_removal=True)
    inbox.wait_for_item(Badge("A", "04FFEEDDCCBBAA"))


def test_both_readers_gone_then_back(pcsc: tuple[FakePcsc, Inbox]) -> None:
    fake, inbox = pcsc
    fake.unplug(READER_A)
    fake.unplug(READER_B)
    inbox.wait_for(lambda xs: len([x for x in xs if isinstance(x, ReaderFault)]) == 2)
    fake.plug(READER_B)
    fake.plug(READER_A)
    inbox.wait_for_item(ReaderRecovered("A"))
    inbox.wait_for_item(ReaderRecovered("B"))
