"""Fixtures for the driver tests: a session's pcscd with two vpcd readers, virtual cards.

The lead's end-to-end tests can reuse the stack without these fixtures:
`PcscDaemon.shared(binary, dir)` / `PcscDaemon.release_shared()` and `VirtualCard` in
tests/drivers/pcsc_stack.py (one pcscd per process, a host lock across processes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.drivers.pcsc_stack import (
    CARD_PORTS,
    VPCD_LIBRARY,
    PcscDaemon,
    VirtualCard,
    card_seen,
    wait_until,
)
from tests.realparts import missing, require_binary, require_module

CardMaker = Callable[[str, str], VirtualCard]  # (reader "A"|"B", uid hex) -> card


@pytest.fixture(scope="session")
def pcscd_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscDaemon]:
    binary = require_binary("pcscd", "pcscd")
    require_module("smartcard", "pip install pyscard: needs swig, gcc and libpcsclite-dev")
    if not Path(VPCD_LIBRARY).exists():
        missing("vpcd reader driver", "apt-get install vsmartcard-vpcd")
    daemon = PcscDaemon.shared(binary, tmp_path_factory.mktemp("pcscd"))
    yield daemon
    PcscDaemon.release_shared()


@pytest.fixture
def pcscd(pcscd_session: PcscDaemon) -> PcscDaemon:
    """The session's pcscd, running (a test that stopped it and failed restarts it)."""
    pcscd_session.start()
    return pcscd_session


@pytest.fixture
def card(pcscd: PcscDaemon) -> Iterator[CardMaker]:
    """Makes virtual cards for reader A or B; every card is lifted off at teardown."""
    made: list[VirtualCard] = []

    def make(reader: str, uid: str) -> VirtualCard:
        made.append(VirtualCard(uid, CARD_PORTS[reader]))
        return made[-1]

    yield make
    for virtual_card in made:
        virtual_card.remove()
    # The next test starts with empty readers: vpcd cannot tell pcscd that one card
    # left and another arrived within one poll, so a card put down too soon after would
    # look like the same card still lying there.
    for reader in ("A", "B"):
        wait_until(lambda r=reader: not card_seen(r), timeout=5, what=f"reader {reader} empty")
