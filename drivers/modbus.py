"""Slot scales and the VOC sensor on the RS-485 bus, Modbus RTU through pymodbus.

pymodbus is pinned (==3.16.1): its API moves between minor releases, and the CRC
counter below hooks its RTU framer.

One thread polls every register map in turn with the synchronous client. RTU is a
strictly half-duplex master/slave line: one request, one answer, nothing in parallel,
so an event loop would buy no concurrency, only a second threading model next to the
other drivers. A blocking read also bounds each cycle plainly (at worst maps x 2 timeouts).

What goes to the core: a reading per sensor per period, the median of the last
`median_of` good samples (a bottle set down makes the load cell ring; one vibration
spike must not look like a withdrawal). A value outside the map's range is a
`SensorFault`, never a reading; so is a sensor that gave no valid answer for
`silent_after_s`. Timeouts, CRC errors and exception responses are counted on the
driver (`timeouts`, `crc_errors`, ...) for health reporting; individually they are
line noise, not faults.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import structlog
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import DecodePDU
from serial import SerialException

from config.hardware import ModbusConfig, RegisterMap
from drivers.base import Post
from rules.effects import OutputName
from rules.inputs import AnyInput, SensorFault, SensorRecovered, VocReading, WeightReading

log = structlog.get_logger("drivers.modbus")


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def decode_value(registers: list[int], register_map: RegisterMap) -> int:
    """The map's value in mg or ppb from the raw 16-bit registers it read."""
    if len(registers) != register_map.words:
        raise ValueError(f"expected {register_map.words} registers, got {len(registers)}")
    words = registers if register_map.word_order == "big" else list(reversed(registers))
    raw = 0
    for word in words:
        raw = (raw << 16) | (word & 0xFFFF)
    bits = 16 * register_map.words
    if register_map.signed and raw >= 1 << (bits - 1):
        raw -= 1 << bits
    # Integers end to end, like the wire: round the scaled value to the nearest unit.
    return round(Fraction(raw * register_map.scale_num, register_map.scale_den))


class CrcCountingFramer(FramerRTU):
    """pymodbus's RTU framer, counting the frames it drops for a bad CRC.

    pymodbus discards such a frame silently and the request then ends as a plain
    timeout; a cabinet with a flaky RS-485 line must be told apart from a dead sensor.
    FramerRTU.decode reports a CRC failure, and only that, as "bytes used, no frame".
    """

    def __init__(self, decoder: DecodePDU, on_crc_error: Callable[[], None]) -> None:
        super().__init__(decoder)
        self._on_crc_error = on_crc_error

    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        used, device_id, transaction_id, frame = super().decode(data)
        if used and not frame:
            self._on_crc_error()
        return used, device_id, transaction_id, frame


COUNTERS = (
    "polls", "readings", "timeouts", "crc_errors", "exception_responses", "late_answers",
    "out_of_range", "connect_failures", "io_errors", "post_failures", "loop_errors",
)  # fmt: skip


@dataclass
class _Sensor:
    name: str  # "scale:<slot>" or "voc", as SensorFault names it
    register_map: RegisterMap
    slot: int | None  # None for the VOC sensor
    samples: deque[int]
    last_answer_ms: int
    last_error: str = "no answer yet"
    fault: str | None = None  # the fault last posted, None while healthy


class ModbusSensors:
    """Scales and VOC; `ModbusSensors(config)`, then `start(post)`, finally `close()`."""

    name = "modbus"

    def __init__(self, config: ModbusConfig) -> None:
        self.config = config
        self._post: Post | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bus_down = False
        # Counters for health reporting (read from other threads; ints are atomic).
        self.polls = 0
        self.readings = 0
        self.timeouts = 0
        self.crc_errors = 0
        self.exception_responses = 0
        self.late_answers = 0  # answers that came after the timeout, dropped
        self.out_of_range = 0
        self.connect_failures = 0
        self.io_errors = 0
        self.post_failures = 0
        self.loop_errors = 0
        self.client = ModbusSerialClient(
            config.port,
            framer=FramerType.RTU,
            baudrate=config.baudrate,
            bytesize=8,
            parity=config.parity,
            stopbits=config.stopbits,
            timeout=config.timeout_ms / 1000,
            # No hidden retries: a missed answer is counted here and the next period
            # asks again, which keeps one cycle's length predictable.
            retries=0,
        )
        framer = CrcCountingFramer(self.client.framer.decoder, self._count_crc_error)
        self.client.framer = framer
        self.client.transaction.framer = framer
        now = monotonic_ms()
        self._sensors = [
            _Sensor(f"scale:{m.slot}", m, m.slot, deque(maxlen=config.median_of), now)
            for m in config.scales
        ]
        if config.voc is not None:
            self._sensors.append(
                _Sensor("voc", config.voc, None, deque(maxlen=config.median_of), now)
            )

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}

    def outputs(self) -> frozenset[OutputName]:
        return frozenset()

    def apply(self, output: OutputName, on: bool) -> None:
        raise ValueError(f"the Modbus sensors drive no output ({output!r})")

    def start(self, post: Post) -> None:
        if self._thread is not None:
            raise RuntimeError("ModbusSensors can be started once")
        self._post = post
        now = monotonic_ms()
        for sensor in self._sensors:
            sensor.last_answer_ms = now  # silence is counted from start, not construction
        self._thread = threading.Thread(target=self._run, name="modbus-poll", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            # A read in progress ends within its timeout; the waits end at once on stop.
            self._thread.join(timeout=self.config.timeout_ms / 1000 + 5)
            if self._thread.is_alive():
                log.error("modbus.thread_stuck")
        else:
            self._close_port()

    # -- the poll loop ---------------------------------------------------------------

    def _run(self) -> None:
        period = self.config.period_ms
        next_cycle = monotonic_ms()
        try:
            while not self._stop.is_set():
                for sensor in self._sensors:
                    if self._stop.is_set():
                        break
                    try:
                        self._poll(sensor)
                    except Exception as exc:  # one odd answer must not end all polling
                        self.loop_errors += 1
                        sensor.last_error = f"poll error: {exc!r}"
                        log.exception("modbus.poll_error", sensor=sensor.name)
                self._check_silence(monotonic_ms())
                next_cycle += period
                now = monotonic_ms()
                if next_cycle < now:
                    next_cycle = now  # a slow cycle (timeouts) delays, it does not bunch up
                self._stop.wait((next_cycle - now) / 1000)
        finally:
            self._close_port()
            log.info("modbus.stopped")

    def _count_crc_error(self) -> None:
        self.crc_errors += 1

    def _poll(self, sensor: _Sensor) -> None:
        register_map = sensor.register_map
        crc_before = self.crc_errors
        self.polls += 1
        try:
            read = (
                self.client.read_holding_registers
                if register_map.table == "holding"
                else self.client.read_input_registers
            )
            response = read(
                register_map.address, count=register_map.words, device_id=register_map.unit
            )
        except ModbusIOException:
            if self.crc_errors > crc_before:
                sensor.last_error = "CRC error"
            else:
                self.timeouts += 1
                sensor.last_error = "timeout"
            log.debug("modbus.no_answer", sensor=sensor.name, error=sensor.last_error)
            self._let_late_answer_pass()
            return
        except ConnectionException as exc:
            self._port_failed(sensor, exc, "connect_failures")
            return
        except (SerialException, OSError) as exc:
            self._port_failed(sensor, exc, "io_errors")
            return
        except ModbusException as exc:  # malformed answer, wrong unit id in the answer
            self.io_errors += 1
            sensor.last_error = f"protocol error: {exc}"
            log.warning("modbus.protocol_error", sensor=sensor.name, error=str(exc))
            return
        if self._bus_down:
            self._bus_down = False
            log.info("modbus.port_back", port=self.config.port)
        if response.isError():
            self.exception_responses += 1
            sensor.last_error = f"exception code {response.exception_code}"
            log.debug("modbus.exception_response", sensor=sensor.name, code=response.exception_code)
            return
        self._sample(sensor, list(response.registers))

    def _let_late_answer_pass(self) -> None:
        """After a missed answer, wait one more timeout and drop whatever came in.

        RTU answers carry no transaction id: a slow device's late answer to this request
        would otherwise be taken as the answer to the next one, and two maps on the same
        unit look alike (a scale's reading would land on another slot).
        """
        if self._stop.wait(self.config.timeout_ms / 1000):
            return
        port = self.client.socket
        if port is None:
            return
        try:
            if port.in_waiting:
                port.reset_input_buffer()
                self.late_answers += 1
        except (SerialException, OSError) as exc:
            self.io_errors += 1
            log.warning("modbus.flush_failed", error=str(exc))

    def _port_failed(self, sensor: _Sensor, exc: Exception, counter: str) -> None:
        setattr(self, counter, getattr(self, counter) + 1)
        sensor.last_error = f"port {self.config.port}: {exc}"
        if not self._bus_down:
            self._bus_down = True
            log.warning("modbus.port_failed", port=self.config.port, error=str(exc))
        # Reopen on the next request: a USB RS-485 adapter may come back in time.
        self._close_port()

    def _close_port(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated

    def _sample(self, sensor: _Sensor, registers: list[int]) -> None:
        register_map = sensor.register_map
        try:
            value = decode_value(registers, register_map)
        except ValueError as exc:
            self.io_errors += 1
            sensor.last_error = str(exc)
            log.warning("modbus.bad_answer", sensor=sensor.name, error=str(exc))
            return
        sensor.last_answer_ms = monotonic_ms()
        if not register_map.min_value <= value <= register_map.max_value:
            self.out_of_range += 1
            bounds = f"[{register_map.min_value}, {register_map.max_value}]"
            self._fault(sensor, f"out of range: {value} not in {bounds}")
            return
        sensor.samples.append(value)
        if len(sensor.samples) < self.config.median_of:
            return  # the filter window fills first (after start and after a fault)
        if sensor.fault is not None:
            sensor.fault = None
            log.info("modbus.sensor_recovered", sensor=sensor.name)
            self._deliver(SensorRecovered(sensor.name))
        filtered = statistics.median_low(sensor.samples)
        self.readings += 1
        if sensor.slot is None:
            self._deliver(VocReading(ppb=filtered))
        else:
            self._deliver(WeightReading(slot=sensor.slot, mg=filtered))

    def _check_silence(self, now: int) -> None:
        limit_ms = self.config.silent_after_s * 1000
        for sensor in self._sensors:
            silent_ms = now - sensor.last_answer_ms
            if silent_ms >= limit_ms:
                self._fault(sensor, f"silent for {silent_ms // 1000} s ({sensor.last_error})")

    def _fault(self, sensor: _Sensor, detail: str) -> None:
        # Stale or bad samples must not vote in the median after recovery.
        sensor.samples.clear()
        if sensor.fault is not None:
            return
        sensor.fault = detail
        log.warning("modbus.sensor_fault", sensor=sensor.name, detail=detail)
        self._deliver(SensorFault(sensor.name, detail))

    def _deliver(self, item: AnyInput) -> None:
        assert self._post is not None
        try:
            self._post(item)
        except Exception as exc:  # the inbox's failure must not end the poll loop
            self.post_failures += 1
            log.error("modbus.post_failed", item=type(item).__name__, error=repr(exc))
