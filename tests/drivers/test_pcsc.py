"""Card readers A and B on a real PC/SC stack: pcscd + vpcd + virtual cards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import structlog

from config.hardware import ReadersConfig
from rules.inputs import Badge, ReaderFault, ReaderRecovered
from tests.drivers.conftest import CardMaker
from tests.drivers.pcsc_stack import PcscDaemon, card_seen
from tests.drivers.recorder import Inbox, wait_until

if TYPE_CHECKING:
    from drivers.pcsc import PcscReaders

pytestmark = pytest.mark.realpart

ZHANG = "04A1B2C3D4E5F6"
LI = "04FFEEDDCCBBAA"
FAST = ReadersConfig(poll_timeout_ms=200, reconnect_ms=100)

Readers = Callable[..., tuple["PcscReaders", Inbox]]


@pytest.fixture
def readers(pcscd: PcscDaemon) -> Iterator[Readers]:
    from drivers.pcsc import PcscReaders

    started: list[PcscReaders] = []

    def start(
        config: ReadersConfig = FAST, live: frozenset[str] = frozenset("AB")
    ) -> tuple[PcscReaders, Inbox]:
        driver = PcscReaders(config)
        inbox = Inbox()
        driver.start(inbox.post)
        started.append(driver)
        wait_until(lambda: driver.live_readers() >= live, what=f"readers {sorted(live)} live")
        return driver, inbox

    yield start
    for driver in started:
        driver.close()


def badges(inbox: Inbox) -> list[Badge]:
    return [x for x in inbox.snapshot() if isinstance(x, Badge)]


def test_two_people_badge_on_readers_a_and_b(readers: Readers, card: CardMaker) -> None:
    driver, inbox = readers()
    card("A", ZHANG).present()
    card("B", LI).present()
    inbox.wait_for(lambda xs: len([x for x in xs if isinstance(x, Badge)]) >= 2)
    assert sorted(badges(inbox), key=lambda b: b.reader) == [Badge("A", ZHANG), Badge("B", LI)]
    assert driver.badges == 2
    assert not [x for x in inbox.snapshot() if isinstance(x, ReaderFault)]


def test_a_card_left_on_the_reader_is_one_badge(readers: Readers, card: CardMaker) -> None:
    driver, inbox = readers()
    zhang = card("A", ZHANG)
    zhang.present()
    inbox.wait_for_item(Badge("A", ZHANG))
    # pcscd checks a present card on every poll cycle (~400 ms); let it look several
    # more times, then prove the loop is still live with a badge on the other reader.
    polls = zhang.presence_polls
    wait_until(lambda: zhang.presence_polls >= polls + 4, what="pcscd to poll the card")
    card("B", LI).present()
    inbox.wait_for_item(Badge("B", LI))
    assert badges(inbox).count(Badge("A", ZHANG)) == 1
    assert zhang.uid_reads == 1
    # Lifted and presented again: that is a new badge.
    zhang.remove()
    wait_until(lambda: not card_seen("A"), what="pcscd to see the card lifted")
    zhang.present()
    inbox.wait_for(lambda xs: xs.count(Badge("A", ZHANG)) == 2, what="second badge on A")
    assert driver.read_failures == 0


def test_pcscd_restart_is_a_reader_fault_then_recovery_and_badges_work_again(
    pcscd: PcscDaemon, readers: Readers, card: CardMaker
) -> None:
    driver, inbox = readers()
    card("A", ZHANG).present()
    inbox.wait_for_item(Badge("A", ZHANG))

    pcscd.stop()
    inbox.wait_for(
        lambda xs: {x.reader for x in xs if isinstance(x, ReaderFault)} == {"A", "B"},
        what="ReaderFault on A and B",
    )
    faulted = len(inbox.snapshot())
    pcscd.start()
    inbox.wait_for_item(ReaderRecovered("A"), after=faulted)
    inbox.wait_for_item(ReaderRecovered("B"), after=faulted)
    assert driver.service_losses >= 1

    # Both people badge again; it must work within 5 s of pcscd being back.
    after = len(inbox.snapshot())
    card("A", ZHANG).present()
    card("B", LI).present()
    inbox.wait_for_item(Badge("A", ZHANG), timeout=5, after=after)
    inbox.wait_for_item(Badge("B", LI), timeout=5, after=after)


def test_a_missing_reader_is_a_fault_and_the_other_reader_still_works(
    readers: Readers, card: CardMaker
) -> None:
    _, inbox = readers(
        ReadersConfig(b_pattern="^Door Reader 9$", poll_timeout_ms=200), live=frozenset("A")
    )
    inbox.wait_for(lambda xs: any(isinstance(x, ReaderFault) for x in xs))
    fault = next(x for x in inbox.snapshot() if isinstance(x, ReaderFault))
    assert fault.reader == "B"
    assert "Door Reader 9" in fault.detail
    card("A", ZHANG).present()
    inbox.wait_for_item(Badge("A", ZHANG))


def test_a_card_already_on_the_reader_at_start_is_not_a_badge(
    readers: Readers, card: CardMaker
) -> None:
    zhang = card("A", ZHANG)
    zhang.present()
    wait_until(lambda: card_seen("A"), what="pcscd to see the card")
    driver, inbox = readers()
    assert driver.cards_present_at_start == 1
    card("B", LI).present()
    inbox.wait_for_item(Badge("B", LI))
    assert badges(inbox) == [Badge("B", LI)]


def test_logs_show_only_the_last_four_digits_of_a_uid(readers: Readers, card: CardMaker) -> None:
    with structlog.testing.capture_logs() as logs:
        _, inbox = readers()
        card("A", ZHANG).present()
        inbox.wait_for_item(Badge("A", ZHANG))
    badge_logs = [entry for entry in logs if entry["event"] == "reader.badge"]
    assert badge_logs and badge_logs[0]["uid"] == "**********E5F6"
    assert ZHANG not in repr(logs)
