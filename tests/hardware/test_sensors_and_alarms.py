"""Scales and VOC over Modbus RTU, leak and tamper on GPIO: the agent's record and outputs."""

from __future__ import annotations

import time

import pytest

from config.policy import Policy
from rules.inputs import LeakChanged, TamperChanged, VocReading, WeightReading
from tests.drivers.conftest import CardMaker
from tests.hardware.conftest import AgentMaker
from tests.hardware.observe import wait_until
from tests.hardware.rig import (
    BUZZER,
    DOOR,
    FAN,
    KEEPER,
    LEAK,
    LED_RED,
    RELAY,
    SILENT_AFTER_S,
    TAMPER,
    USER,
    Backends,
    ModbusBus,
    book_gross,
)
from tests.hardware.wiring import CabinetPins

pytestmark = pytest.mark.realpart


def test_weight_taken_during_a_session_is_a_withdrawal_of_both_persons(
    agent: AgentMaker,
    healthy_cabinet: CabinetPins,
    bus: ModbusBus,
    card: CardMaker,
    policy: Policy,
) -> None:
    pins = healthy_cabinet
    cabinet = agent(
        Backends(gpio=True, readers=True, modbus_port=bus.agent_port), readers=True, slots=(3, 4)
    )
    outbox = cabinet.outbox
    before = book_gross(policy, 3)  # 682 000 mg: the bottle and its 500 g on the books
    assert cabinet.inputs.weights() == {3: before, 4: book_gross(policy, 4)}

    card("A", KEEPER[1]).present()
    outbox.wait_for("access.pending", person=KEEPER[0])
    card("B", USER[1]).present()
    session = outbox.wait_for("access.granted")["data"]["session"]
    wait_until(lambda: pins.line(RELAY).state, 5, "lock relay energised")
    pins.line(DOOR).open_contact()
    outbox.wait_for("lock.locked", session=session, reason="door_opened")

    taken = 69_000
    bus.set_weight(3, before - taken)  # the bottle is put back 69 g lighter
    cabinet.inputs.wait_for(WeightReading(slot=3, mg=before - taken))
    pins.line(DOOR).close_contact()
    closed = outbox.wait_for("door.closed", session=session)

    # settle_s = 1: the weights must hold still that long before the books move.
    withdrawal = outbox.wait_for("inventory.withdrawal", timeout=6, session=session)
    assert withdrawal["data"] == {
        "session": session,
        "persons": [KEEPER[0], USER[0]],
        "slot": 3,
        "container": "c-NaCN-01",
        "cas": "143-33-9",
        "amount_mg": taken,
        "book_mg": 500_000 - taken,
        "approval": None,
        "purpose": None,
    }
    assert withdrawal["seq"] > closed["seq"]
    assert withdrawal["ts"] - closed["ts"] >= 1000 - 50
    assert len(outbox.of("inventory.withdrawal")) == 1, "slot 4 did not change"
    assert not outbox.alarms("mass_unexplained") and not outbox.alarms("mass_mismatch")


def test_leak_tamper_and_voc_raise_alarms_and_drive_the_fan(
    agent: AgentMaker, healthy_cabinet: CabinetPins, bus: ModbusBus, policy: Policy
) -> None:
    pins = healthy_cabinet
    cabinet = agent(Backends(gpio=True, modbus_port=bus.agent_port), slots=(3, 4))
    outbox = cabinet.outbox
    fan, buzzer = pins.line(FAN), pins.line(BUZZER)
    assert not fan.state and not buzzer.state

    pins.line(LEAK).close_contact()  # the float switch closes: wet
    cabinet.inputs.wait_for(LeakChanged(wet=True))
    leak = outbox.wait_for("alarm.raised", kind="leak")
    assert leak["sev"] == "alarm"
    red = pins.line(LED_RED)  # wired active-low: the line goes low to light it
    wait_until(lambda: fan.state and buzzer.state and not red.state, 5, "fan, buzzer, red LED")

    pins.line(LEAK).open_contact()  # dry again
    outbox.wait_for("alarm.cleared", kind="leak", alarm=leak["data"]["alarm"])
    wait_until(lambda: not fan.state, 5, "fan off once the floor is dry")

    pins.line(TAMPER).open_contact()  # the enclosure is opened
    cabinet.inputs.wait_for(TamperChanged(open=True))
    outbox.wait_for("alarm.raised", kind="tamper")

    alarm_ppb = policy.environment.voc_alarm_ppb
    bus.set_voc(alarm_ppb + 5_000)
    cabinet.inputs.wait_for(VocReading(ppb=alarm_ppb + 5_000))
    over_since = time.monotonic()
    voc = outbox.wait_for("alarm.raised", timeout=5, kind="voc_high")
    held = time.monotonic() - over_since
    assert voc["data"]["voc_ppb"] == alarm_ppb + 5_000
    assert held >= policy.environment.voc_hold_s - 0.2, "raised only after voc_hold_s"
    wait_until(lambda: fan.state, 5, "fan on for the VOC alarm")
    assert outbox.of("env.voc_warning"), "the warning level was crossed on the way"
    assert not outbox.alarms("sensor_fault")


def test_a_silent_modbus_bus_is_a_sensor_fault_then_recovers(
    agent: AgentMaker, healthy_cabinet: CabinetPins, bus: ModbusBus
) -> None:
    cabinet = agent(Backends(gpio=True, modbus_port=bus.agent_port), slots=(3, 4))
    outbox = cabinet.outbox

    bus.power_off()
    off_at = time.monotonic()
    sensors = {"scale:3", "scale:4", "voc"}

    def faulted() -> set[str]:
        return {a["data"]["sensor"] for a in outbox.alarms("sensor_fault")}

    wait_until(lambda: faulted() == sensors, SILENT_AFTER_S + 4, "a sensor_fault per sensor")
    # silent_after_s, plus about one poll cycle of timeouts (3 maps x 2 x 100 ms).
    assert time.monotonic() - off_at <= SILENT_AFTER_S + 2
    detail = outbox.alarms("sensor_fault")[0]["data"]["detail"]
    assert "silent" in detail and "timeout" in detail
    assert pins_unchanged_by_faults(healthy_cabinet)

    bus.power_on()

    def cleared() -> set[str]:
        return {a["data"].get("sensor") for a in outbox.of("alarm.cleared", kind="sensor_fault")}

    wait_until(lambda: cleared() == sensors, 5, "each sensor_fault cleared")


def pins_unchanged_by_faults(pins: CabinetPins) -> bool:
    """A sensor fault does not ventilate, sound or unlock (it is for the operator)."""
    return not (pins.line(FAN).state or pins.line(BUZZER).state or pins.line(RELAY).state)
