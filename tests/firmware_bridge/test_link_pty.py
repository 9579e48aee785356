"""The agent's pyserial link against the reference MCU over a real pty pair."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import serial

from firmware_bridge.codes import FaultCode, LockCause
from firmware_bridge.link import (
    CommandConfirmed,
    CommandFailed,
    LinkDown,
    LinkUp,
    McuLink,
    Received,
)
from firmware_bridge.messages import Ack, Door, Fault, Heartbeat, LockCommand, LockState, Weights
from firmware_bridge.protocol import Decoder, Frame, encode
from tests.firmware_bridge.conftest import (
    ACK_TIMEOUT_MS,
    FAILSAFE_MS,
    HEARTBEAT_MS,
    RETRIES,
    PtyMcu,
    Recorder,
    wait_until,
)


@pytest.fixture
def events() -> Recorder:
    return Recorder()


@pytest.fixture
def link(mcu: PtyMcu, events: Recorder) -> Iterator[McuLink]:
    link = McuLink(
        mcu.path,
        events,
        heartbeat_ms=HEARTBEAT_MS,
        silence_ms=FAILSAFE_MS,
        ack_timeout_ms=ACK_TIMEOUT_MS,
        retries=RETRIES,
        reopen_ms=100,
    )
    link.start()
    events.wait_for(lambda xs: any(isinstance(x, LinkUp) for x in xs), "link up")
    try:
        yield link
    finally:
        link.close()


def weighs(slot: int, mg: int) -> Callable[[list[object]], bool]:
    def seen(items: list[object]) -> bool:
        return any(
            isinstance(x, Received)
            and isinstance(x.message, Weights)
            and any(r.slot == slot and r.mg == mg for r in x.message.readings)
            for x in items
        )

    return seen


def test_link_comes_up_with_the_mcu_identity(link: McuLink) -> None:
    assert link.up and link.info is not None
    assert (link.info.slot_count, link.info.failsafe_ms) == (2, FAILSAFE_MS)


def test_weights_and_door_reports_flow_to_the_agent(
    mcu: PtyMcu, link: McuLink, events: Recorder
) -> None:
    events.wait_for(weighs(1, 682_000), "initial weight of slot 1")
    mcu.sim.set_weight(1, 431_000)
    events.wait_for(weighs(1, 431_000), "slot 1 after a withdrawal")
    mark = len(events.snapshot())
    mcu.sim.set_door(True)
    mcu.sim.set_door(False)
    opened = events.wait_item(Received(Door(True)), after=mark)
    assert events.wait_item(Received(Door(False)), after=opened) > opened


def test_lock_command_is_acknowledged_and_the_relay_follows(
    mcu: PtyMcu, link: McuLink, events: Recorder
) -> None:
    link.send(LockCommand(True, 5000))
    events.wait_item(CommandConfirmed(LockCommand(True, 5000)))
    assert mcu.sim.relay_on
    events.wait_item(Received(LockState(True, False, LockCause.COMMAND)))
    link.send(LockCommand(False))
    events.wait_item(CommandConfirmed(LockCommand(False)))
    assert not mcu.sim.relay_on


def test_a_command_retransmitted_after_lost_acks_is_applied_once(
    mcu: PtyMcu, link: McuLink, events: Recorder
) -> None:
    mcu.sim.drop_acks(2)
    link.send(LockCommand(True, 5000))
    events.wait_item(CommandConfirmed(LockCommand(True, 5000)))
    assert link.retransmits >= 2
    assert mcu.sim.applied.count(LockCommand(True, 5000)) == 1
    assert events.snapshot().count(Received(LockState(True, False, LockCause.COMMAND))) == 1


def test_a_refused_command_is_reported_failed_with_the_reason(
    link: McuLink, events: Recorder
) -> None:
    link.send(LockCommand(True, 0))
    events.wait_item(CommandFailed(LockCommand(True, 0), "nack:INVALID_VALUE"))


def test_garbage_in_both_directions_is_survived(
    mcu: PtyMcu, link: McuLink, events: Recorder
) -> None:
    mcu.sim.inject_noise(b"\x13\x37\xfe\x02\x11" * 40 + b"\x05\x01\x10")
    os.write(mcu.pair.slave, b"\xaa\x55\x01\x02\x03" * 40)  # towards the MCU, as if from us
    mcu.sim.set_door(True)
    events.wait_item(Received(Door(True)))
    link.send(LockCommand(True, 5000))
    events.wait_item(CommandConfirmed(LockCommand(True, 5000)))
    assert link.stats.frame_errors >= 1 and mcu.sim.firmware.frame_errors >= 1


def test_mcu_locks_itself_when_the_agent_stops_heartbeating(
    mcu: PtyMcu, link: McuLink, events: Recorder
) -> None:
    link.send(LockCommand(True, 60_000))
    events.wait_item(CommandConfirmed(LockCommand(True, 60_000)))
    stopped = time.monotonic()
    link.close()  # the agent dies: no lock command, no more heartbeats
    wait_until(lambda: not mcu.sim.relay_on, "the MCU's failsafe to release the relay")
    took = time.monotonic() - stopped
    assert mcu.sim.failsafe_tripped
    assert took >= (FAILSAFE_MS - 2 * HEARTBEAT_MS) / 1000  # not early: it waited for silence


def test_heartbeat_loss_is_reported_as_lock_state_failsafe_and_fault(mcu: PtyMcu) -> None:
    # The test is the agent here, by hand, so that it can fall silent and keep listening.
    port = serial.Serial(mcu.path, timeout=0.02)
    decoder = Decoder()
    heard: list[Frame] = []

    def listen(until: float) -> None:
        while time.monotonic() < until:
            for item in decoder.feed(port.read(256)):
                if isinstance(item, Frame):
                    heard.append(item)
                    if item.message.RELIABLE:
                        port.write(encode(Frame(0, Ack(item.seq))))

    try:
        port.write(encode(Frame(0, Heartbeat(0))))
        port.write(encode(Frame(1, LockCommand(True, 60_000))))
        wait_until(lambda: mcu.sim.relay_on, "unlock")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and mcu.sim.relay_on:
            listen(time.monotonic() + 0.05)  # listening, but not heartbeating
        listen(time.monotonic() + 0.5)
    finally:
        port.close()
    messages = [f.message for f in heard]
    assert not mcu.sim.relay_on
    assert LockState(False, True, LockCause.FAILSAFE) in messages
    faults = [m for m in messages if isinstance(m, Fault)]
    assert any(f.code == FaultCode.HEARTBEAT_LOST and f.active for f in faults)


def test_link_goes_down_when_the_mcu_hangs_and_up_again_after_it_reboots(
    mcu: PtyMcu, link: McuLink, events: Recorder
) -> None:
    mcu.sim.hang()
    events.wait_item(LinkDown("silent"))
    assert not link.up
    mark = len(events.snapshot())
    mcu.sim.reboot()
    events.wait_for(lambda xs: any(isinstance(x, LinkUp) for x in xs[mark:]), "link up again")
    events.wait_item(Received(LockState(False, True, LockCause.BOOT)), after=mark)
