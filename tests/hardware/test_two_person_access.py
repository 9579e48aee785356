"""Two people, two real card readers, a real lock relay line: `cabinet-agent run` end to end.

Readers A and B are pcscd + vpcd with virtual cards, the door, tamper and leak contacts
and the lock relay are gpiozero mock lines, scales and VOC a pymodbus RTU server on a
pty; the policy is examples/policy.toml signed by a central key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from agent.wire import verify_envelope
from config.policy import Policy
from rules.inputs import DoorChanged
from tests.drivers.conftest import CardMaker
from tests.drivers.pcsc_stack import PcscDaemon, card_seen
from tests.hardware.conftest import AgentMaker
from tests.hardware.observe import OutputLog, wait_until
from tests.hardware.rig import (
    DEVICE,
    DOOR,
    FAN,
    KEEPER,
    LED_GREEN,
    RELAY,
    SITE,
    USER,
    USER_SECOND_CARD,
    Backends,
    ModbusBus,
)
from tests.hardware.wiring import CabinetPins
from tests.support.broker import Broker
from tests.support.fixtures import Recorder

pytestmark = pytest.mark.realpart

GPIO_AND_READERS = Backends(gpio=True, readers=True)


def lock_event_before(envelopes: list[dict[str, Any]], seq: int) -> dict[str, Any]:
    """The last lock.* event committed at or before `seq`."""
    locks = [e for e in envelopes if e["type"].startswith("lock.") and e["seq"] <= seq]
    assert locks, f"no lock event committed by seq {seq}"
    return locks[-1]


def test_two_people_on_readers_a_and_b_unlock_until_the_door_opens(
    agent: AgentMaker,
    healthy_cabinet: CabinetPins,
    bus: ModbusBus,
    card: CardMaker,
    broker: Broker,
    recorder: Callable[..., Recorder],
) -> None:
    pins = healthy_cabinet
    events = recorder(broker, f"cabinet/{SITE}/{DEVICE}/evt/#")
    cabinet = agent(
        Backends(gpio=True, readers=True, modbus_port=bus.agent_port), readers=True, slots=(3, 4)
    )
    relay = pins.line(RELAY)
    relay_log = OutputLog(pins, RELAY, cabinet.outbox)
    outbox = cabinet.outbox

    card("A", KEEPER[1]).present()
    pending = outbox.wait_for("access.pending", person=KEEPER[0], reader="A")
    assert relay.levels() == [False], "one badge must never energise the relay"

    card("B", USER[1]).present()
    granted = outbox.wait_for("access.granted")
    assert granted["data"]["persons"] == [KEEPER[0], USER[0]]
    assert granted["data"]["readers"] == ["A", "B"]
    assert granted["data"]["mode"] == "local"
    session = granted["data"]["session"]
    unlocked = outbox.wait_for("lock.unlocked", session=session)
    assert unlocked["seq"] == granted["seq"] + 1 and pending["seq"] < granted["seq"]
    wait_until(lambda: relay.state, 5, "lock relay energised")
    # Each output is applied on its own after the event is durable: the LED may follow
    # the relay by a moment, so wait for it as for the relay (a loaded CI run saw it).
    wait_until(lambda: pins.line(LED_GREEN).state, 5, "the green LED shows the open session")

    pins.line(DOOR).open_contact()  # the door opens: its NC loop breaks
    cabinet.inputs.wait_for(DoorChanged(open=True))
    opened = outbox.wait_for("door.opened", session=session)
    locked = outbox.wait_for("lock.locked", session=session)
    assert locked["data"]["reason"] == "door_opened"
    wait_until(lambda: not relay.state, 5, "lock relay released")
    wait_until(lambda: pins.line(FAN).state, 5, "ventilation runs while the door is open")

    pins.line(DOOR).close_contact()
    closed = outbox.wait_for("door.closed", session=session)
    wait_until(lambda: not pins.line(FAN).state, 5, "fan off once the door is shut")
    assert locked["seq"] == opened["seq"] + 1 and closed["seq"] > locked["seq"]

    # The relay line went on once and off once, and each move followed its durable event.
    assert relay.levels() == [False, True, False]
    on, off = relay_log.wait_for(2)
    assert len(relay_log.changes) == 2
    envelopes = outbox.envelopes()
    assert on.on and lock_event_before(envelopes, on.committed_seq)["seq"] == unlocked["seq"]
    assert not off.on and lock_event_before(envelopes, off.committed_seq)["seq"] == locked["seq"]
    assert on.committed_seq >= unlocked["seq"] and off.committed_seq >= locked["seq"]
    assert not outbox.of("inventory.withdrawal"), "nothing was taken"
    assert not outbox.alarms("door_forced")

    # The same signed envelopes reached the broker, byte for byte.
    topic = f"cabinet/{SITE}/{DEVICE}/evt/access"

    def published() -> dict[int, bytes]:
        return {json.loads(m.payload)["seq"]: m.payload for m in events.on(topic)}

    events.wait_for(lambda: granted["seq"] in published(), 10, "access.granted over MQTT")
    assert published()[granted["seq"]] == outbox.payload(granted["seq"])
    verify_envelope(json.loads(published()[granted["seq"]]), cabinet.daemon.key.public)


def test_unlocked_but_nobody_opens_relocks_after_unlock_s(
    agent: AgentMaker, healthy_cabinet: CabinetPins, card: CardMaker, policy: Policy
) -> None:
    pins = healthy_cabinet
    cabinet = agent(GPIO_AND_READERS, readers=True)  # no Modbus bus on this cabinet
    relay = pins.line(RELAY)
    relay_log = OutputLog(pins, RELAY, cabinet.outbox)

    card("A", USER[1]).present()
    cabinet.outbox.wait_for("access.pending", person=USER[0], reader="A")
    card("B", KEEPER[1]).present()
    granted = cabinet.outbox.wait_for("access.granted")
    assert granted["data"]["persons"] == [USER[0], KEEPER[0]]
    session = granted["data"]["session"]
    wait_until(lambda: relay.state, 5, "lock relay energised")

    locked = cabinet.outbox.wait_for("lock.locked", timeout=6, session=session)
    assert locked["data"]["reason"] == "timeout"
    wait_until(lambda: not relay.state, 5, "lock relay released")
    on, off = relay_log.wait_for(2)
    assert len(relay_log.changes) == 2
    unlock_s = policy.access.unlock_s
    assert unlock_s - 0.3 <= off.at - on.at <= unlock_s + 1.5
    assert locked["ts"] - granted["ts"] >= unlock_s * 1000 - 50
    assert relay.levels() == [False, True, False]
    assert not cabinet.outbox.of("door.opened")


def test_one_person_alone_or_one_card_twice_never_unlocks(
    agent: AgentMaker, healthy_cabinet: CabinetPins, card: CardMaker, policy: Policy
) -> None:
    pins = healthy_cabinet
    cabinet = agent(GPIO_AND_READERS, readers=True)
    outbox = cabinet.outbox

    first = card("A", USER[1])
    first.present()
    pending = outbox.wait_for("access.pending", person=USER[0], reader="A")

    # The same person's second card on the other reader.
    second_card = card("B", USER_SECOND_CARD)
    second_card.present()
    outbox.wait_for("access.denied", person=USER[0], reader="B", reason="same_person")
    second_card.remove()
    # vpcd cannot report "one card left, another came" within one pcscd poll.
    wait_until(lambda: not card_seen("B"), 5, "reader B empty")

    # The very same card, lifted off A and presented on B.
    first.remove()
    card("B", USER[1]).present()
    denials = 2
    wait_until(
        lambda: len(outbox.of("access.denied", reason="same_person")) == denials,
        5,
        "the same card on B refused",
    )

    # Nobody else comes: the pair window ends.
    expired = outbox.wait_for("access.expired", timeout=8, person=USER[0])
    assert expired["ts"] - pending["ts"] >= policy.access.pair_window_s * 1000 - 50
    types = outbox.types()
    assert "access.granted" not in types and "lock.unlocked" not in types
    assert pins.line(RELAY).levels() == [False], "the relay was never energised"
    assert pins.line(LED_GREEN).levels() == [False]


def test_stopping_during_an_unlock_releases_the_relay_after_the_record(
    agent: AgentMaker, healthy_cabinet: CabinetPins, card: CardMaker
) -> None:
    pins = healthy_cabinet
    cabinet = agent(GPIO_AND_READERS, readers=True)
    relay = pins.line(RELAY)
    relay_log = OutputLog(pins, RELAY, cabinet.outbox)
    card("A", KEEPER[1]).present()
    cabinet.outbox.wait_for("access.pending", person=KEEPER[0])
    card("B", USER[1]).present()
    cabinet.outbox.wait_for("lock.unlocked")
    wait_until(lambda: relay.state, 5, "lock relay energised")

    cabinet.stop()  # what SIGTERM does

    assert relay.levels() == [False, True, False], "fail-secure: relay off at stop"
    stopping = cabinet.outbox.wait_for("system.stopping")
    assert relay_log.changes[-1].committed_seq >= stopping["seq"], "off after the record"


def test_pcscd_gone_is_a_reader_fault_and_badging_works_once_it_is_back(
    agent: AgentMaker, healthy_cabinet: CabinetPins, card: CardMaker, pcscd: PcscDaemon
) -> None:
    cabinet = agent(GPIO_AND_READERS, readers=True)
    outbox = cabinet.outbox

    pcscd.stop()  # a package upgrade, a USB reset: the service is gone for a while

    def faulted() -> set[str]:
        return {a["data"]["reader"] for a in outbox.alarms("reader_fault")}

    wait_until(lambda: faulted() == {"A", "B"}, 5, "reader_fault for A and B")
    assert cabinet.running, "a lost reader service is an alarm, not a crash"

    pcscd.start()

    def cleared() -> set[str]:
        return {a["data"]["reader"] for a in outbox.of("alarm.cleared", kind="reader_fault")}

    wait_until(lambda: cleared() == {"A", "B"}, 10, "reader_fault cleared for A and B")
    wait_until(lambda: cabinet.readers().live_readers() == {"A", "B"}, 5, "readers live again")
    card("A", KEEPER[1]).present()
    outbox.wait_for("access.pending", person=KEEPER[0])
    card("B", USER[1]).present()
    granted = outbox.wait_for("access.granted")
    assert granted["data"]["readers"] == ["A", "B"]
    wait_until(lambda: healthy_cabinet.line(RELAY).state, 5, "lock relay energised")
