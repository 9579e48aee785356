"""Scales and VOC over Modbus RTU: pymodbus devices on a pty, the driver on the other end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.hardware import ModbusConfig, RegisterMap, ScaleMap
from drivers.modbus import ModbusSensors, decode_value
from rules.inputs import SensorFault, SensorRecovered, VocReading, WeightReading
from tests.drivers.modbus_bench import LineTap, SimulatedDevices, words_of
from tests.drivers.recorder import Inbox, wait_until

SCALES, VOC = 1, 2  # unit ids on the bus

# Slot 3: load cell in units of 10 mg, 32-bit unsigned, high word first.
SLOT3 = ScaleMap(slot=3, unit=SCALES, address=0, scale_num=10, max_value=5_000_000)
# Slot 4: a scale that reports signed mg, low word first (tares below zero happen).
SLOT4 = ScaleMap(
    slot=4, unit=SCALES, address=10, signed=True, word_order="little", min_value=-50_000
)
# VOC in 0.1 ppm steps in one input register: ppb = raw * 100.
VOC_MAP = RegisterMap(unit=VOC, address=0, table="input", words=1, scale_num=100, max_value=50_000)


def bus_config(port: str, **changes: object) -> ModbusConfig:
    settings: dict[str, object] = dict(
        port=port,
        baudrate=115200,
        timeout_ms=100,
        period_ms=100,
        median_of=3,
        silent_after_s=1,
        scales=(SLOT3, SLOT4),
        voc=VOC_MAP,
    )
    settings.update(changes)
    return ModbusConfig.model_validate(settings)


class Bench:
    def __init__(self, tap: LineTap, devices: SimulatedDevices) -> None:
        self.tap = tap
        self.devices = devices
        self.drivers: list[ModbusSensors] = []

    def start_driver(self, **changes: object) -> tuple[ModbusSensors, Inbox]:
        driver = ModbusSensors(bus_config(self.tap.agent_port, **changes))
        inbox = Inbox()
        driver.start(inbox.post)
        self.drivers.append(driver)
        return driver, inbox


@pytest.fixture
def bench() -> Iterator[Bench]:
    tap = LineTap()
    devices = SimulatedDevices(tap.device_port, units=(SCALES, VOC))
    devices.set(SCALES, 0, 43_100, words=2)  # 431 000 mg on slot 3
    devices.set(SCALES, 10, -1_200, words=2, order="little")  # -1 200 mg on slot 4
    devices.set(VOC, 0, 57)  # 5 700 ppb
    devices.start()
    bench = Bench(tap, devices)
    yield bench
    for driver in bench.drivers:
        driver.close()
    devices.stop()
    tap.close()


def weights(inbox: Inbox, slot: int) -> list[int]:
    return [x.mg for x in inbox.snapshot() if isinstance(x, WeightReading) and x.slot == slot]


def test_weights_and_voc_arrive_scaled_signed_and_in_word_order(bench: Bench) -> None:
    driver, inbox = bench.start_driver()
    inbox.wait_for_item(WeightReading(slot=3, mg=431_000))
    inbox.wait_for_item(WeightReading(slot=4, mg=-1_200))
    inbox.wait_for_item(VocReading(ppb=5_700))
    assert not [x for x in inbox.snapshot() if isinstance(x, SensorFault)]
    assert driver.timeouts == driver.crc_errors == driver.out_of_range == 0


def test_the_median_filter_hides_a_single_spike_but_follows_a_real_change(bench: Bench) -> None:
    # A bottle set down makes the load cell ring for a sample; then a real withdrawal.
    # A spike inside the cell's range: out of range would be a fault, not noise.
    spike, before, after = 60_000, 43_100, 40_000
    bench.devices.script(SCALES, 0, [before] * 4 + [spike] + [before] * 3 + [after], words=2)
    _, inbox = bench.start_driver()
    inbox.wait_for_item(WeightReading(slot=3, mg=400_000), timeout=10)
    assert bench.devices.script_done(SCALES, 0)  # the spike was served
    seen = weights(inbox, 3)
    assert spike * 10 not in seen
    first_change = seen.index(400_000)
    assert first_change > 0 and set(seen[:first_change]) == {431_000}
    assert not [x for x in inbox.snapshot() if isinstance(x, SensorFault)]


def test_a_value_out_of_range_is_a_sensor_fault_not_a_reading(bench: Bench) -> None:
    driver, inbox = bench.start_driver()
    inbox.wait_for_item(WeightReading(slot=3, mg=431_000))
    bench.devices.set(SCALES, 0, 900_000, words=2)  # 9 000 000 mg: beyond the cell's range
    inbox.wait_for(lambda xs: any(isinstance(x, SensorFault) for x in xs), what="SensorFault")
    fault = next(x for x in inbox.snapshot() if isinstance(x, SensorFault))
    assert fault.sensor == "scale:3"
    assert "out of range" in fault.detail and "9000000" in fault.detail
    assert 9_000_000 not in weights(inbox, 3)
    assert driver.out_of_range >= 1

    bench.devices.set(SCALES, 0, 43_000, words=2)
    at = inbox.wait_for_item(SensorRecovered("scale:3"))
    assert inbox.wait_for_item(WeightReading(slot=3, mg=430_000), after=at) == at + 1
    assert 9_000_000 not in weights(inbox, 3)


def test_a_silent_bus_is_a_sensor_fault_within_the_configured_limit(bench: Bench) -> None:
    driver, inbox = bench.start_driver()
    inbox.wait_for_item(VocReading(ppb=5_700))
    bench.devices.stop()
    items = inbox.wait_for(
        lambda xs: (
            {x.sensor for x in xs if isinstance(x, SensorFault)} == {"scale:3", "scale:4", "voc"}
        ),
        timeout=5,
        what="all three sensors faulted",
    )
    faults = [i for i, x in enumerate(items) if isinstance(x, SensorFault)]
    readings = [i for i, x in enumerate(items) if isinstance(x, (WeightReading, VocReading))]
    silence = inbox.arrival(faults[-1]) - inbox.arrival(readings[-1])
    # Not before the limit (1 s); after it, within one poll cycle of three timed-out
    # reads (3 x 100 ms, each followed by a 100 ms late-answer guard) plus slack.
    assert inbox.arrival(faults[0]) - inbox.arrival(readings[-1]) >= 1.0 - 0.15
    assert silence <= 1.0 + 0.6 + 0.5
    details = [x.detail for x in items if isinstance(x, SensorFault)]
    assert all("silent" in d and "timeout" in d for d in details)
    assert driver.timeouts >= 3
    assert driver.crc_errors == 0


def test_corrupted_answers_are_counted_as_crc_errors_and_polling_goes_on(bench: Bench) -> None:
    driver, inbox = bench.start_driver()
    inbox.wait_for_item(VocReading(ppb=5_700))
    bench.tap.corrupt_answers(3)
    wait_until(lambda: driver.crc_errors >= 3, what="three CRC errors counted")
    assert driver.timeouts == 0  # a garbled answer is not a silent sensor
    bench.tap.inject(bytes.fromhex("00ff13a5"))  # a glitch between two polls
    bench.devices.set(VOC, 0, 58)
    inbox.wait_for_item(VocReading(ppb=5_800))
    assert not [x for x in inbox.snapshot() if isinstance(x, SensorFault)]


def test_a_register_the_device_lacks_is_counted_then_a_fault(bench: Bench) -> None:
    missing = RegisterMap(unit=VOC, address=SimulatedDevices.REGISTERS + 100, words=1)
    driver, inbox = bench.start_driver(scales=(), voc=missing)
    inbox.wait_for(lambda xs: any(isinstance(x, SensorFault) for x in xs), timeout=5)
    fault = next(x for x in inbox.snapshot() if isinstance(x, SensorFault))
    assert fault.sensor == "voc" and "exception code 2" in fault.detail
    assert driver.exception_responses >= 1


def test_a_missing_serial_port_is_a_fault_of_every_sensor_on_it() -> None:
    driver = ModbusSensors(bus_config("/dev/ttyNO-SUCH-ADAPTER"))
    inbox = Inbox()
    driver.start(inbox.post)
    try:
        inbox.wait_for(
            lambda xs: len([x for x in xs if isinstance(x, SensorFault)]) == 3, timeout=5
        )
        assert driver.connect_failures >= 1
        assert all("ttyNO-SUCH-ADAPTER" in x.detail for x in inbox.snapshot())
    finally:
        driver.close()


@pytest.mark.parametrize(
    ("registers", "register_map", "value"),
    [
        ([0x0001, 0x86A0], ScaleMap(slot=1, unit=1, address=0), 100_000),
        ([0x86A0, 0x0001], ScaleMap(slot=1, unit=1, address=0, word_order="little"), 100_000),
        ([0xFFFF, 0xFB50], ScaleMap(slot=1, unit=1, address=0, signed=True, min_value=-9), -1_200),
        ([0xFB50], RegisterMap(unit=1, address=0, words=1, signed=True), -1_200),
        ([0xFB50], RegisterMap(unit=1, address=0, words=1), 64_336),
        ([0x0007], RegisterMap(unit=1, address=0, words=1, scale_num=5, scale_den=2), 18),
    ],
)
def test_register_decoding(registers: list[int], register_map: RegisterMap, value: int) -> None:
    assert decode_value(registers, register_map) == value


def test_the_bench_encodes_registers_as_the_driver_decodes_them() -> None:
    for value, words, order in [(431_000, 2, "big"), (-1_200, 2, "little"), (-7, 1, "big")]:
        register_map = RegisterMap(
            unit=1, address=0, words=words, word_order=order, signed=True, min_value=-10_000
        )
        assert decode_value(words_of(value, words, order), register_map) == value
