"""An RS-485 bench for the Modbus driver: pymodbus RTU devices on a pty, with a line tap.

    driver --- pty (agent side) === LineTap === pty (device side) --- ModbusSerialServer

The tap copies bytes both ways and, on request, corrupts answers (a flipped data byte:
the CRC no longer matches) or drops them, the way a noisy or broken RS-485 line does.
`SimulatedDevices` serves registers whose values a test sets or scripts while the
driver polls (pymodbus 3.16 simulator API: SimDevice/SimData with an async action).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import threading
import tty
from collections import deque
from collections.abc import Iterable
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

WordOrder = Literal["big", "little"]


def words_of(value: int, words: int, order: WordOrder = "big") -> list[int]:
    """Registers holding `value` (two's complement when negative), high word first for big."""
    bits = 16 * words
    raw = value & ((1 << bits) - 1)
    big = [(raw >> (16 * (words - 1 - i))) & 0xFFFF for i in range(words)]
    return big if order == "big" else list(reversed(big))


class LineTap:
    def __init__(self) -> None:
        self._agent_master, self._agent_slave = os.openpty()
        self._device_master, self._device_slave = os.openpty()
        # Raw: no echo, no line discipline, every byte passes as sent. The slave ends
        # stay open here so a side that closes its port does not hang up the pty.
        for fd in (self._agent_slave, self._device_slave):
            tty.setraw(fd)
        for fd in (self._agent_master, self._device_master):
            os.set_blocking(fd, False)
        self.agent_port = os.ttyname(self._agent_slave)
        self.device_port = os.ttyname(self._device_slave)
        self._lock = threading.Lock()
        self._corrupt = 0
        self._drop = False
        self.corrupted = 0
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="line-tap", daemon=True)
        self._thread.start()

    def corrupt_answers(self, count: int) -> None:
        """Flip a data byte in each of the next `count` answers (the CRC then fails)."""
        with self._lock:
            self._corrupt += count

    def inject(self, noise: bytes) -> None:
        """Write bytes toward the driver, as a glitch on the line would."""
        os.write(self._agent_master, noise)

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        for fd in (
            self._agent_master, self._agent_slave, self._device_master, self._device_slave,
            self._wake_r, self._wake_w,
        ):  # fmt: skip
            os.close(fd)

    def _relay(self) -> None:
        sources = [self._agent_master, self._device_master, self._wake_r]
        while True:
            readable, _, _ = select.select(sources, [], [])
            if self._wake_r in readable:
                return
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EIO):
                        continue
                    raise
                if fd == self._agent_master:
                    self._forward(self._device_master, data)
                else:
                    self._forward(self._agent_master, self._mangle(data))

    def _mangle(self, answer: bytes) -> bytes:
        with self._lock:
            if self._corrupt and len(answer) >= 5:
                self._corrupt -= 1
                self.corrupted += 1
                garbled = bytearray(answer)
                garbled[-3] ^= 0x5A  # last data byte before the CRC
                return bytes(garbled)
        return answer

    @staticmethod
    def _forward(fd: int, data: bytes) -> None:
        # Nobody reads a stopped server's side: its queue may fill; drop, like a dead bus.
        with contextlib.suppress(BlockingIOError):
            os.write(fd, data)


class SimulatedDevices:
    """Modbus RTU slaves (one per unit id) answering from values the test controls."""

    REGISTERS = 64  # registers 0..63 exist on every unit; the rest are illegal addresses

    def __init__(self, port: str, units: Iterable[int]) -> None:
        self.port = port
        self.units = tuple(units)
        self._lock = threading.Lock()
        self._values: dict[tuple[int, int], int] = {}
        self._scripts: dict[tuple[int, int], deque[list[int]]] = {}
        self.reads = 0
        self._loop = asyncio.new_event_loop()
        self._server: ModbusSerialServer | None = None
        self._thread: threading.Thread | None = None

    def set(
        self, unit: int, address: int, value: int, words: int = 1, order: WordOrder = "big"
    ) -> None:
        with self._lock:
            for offset, word in enumerate(words_of(value, words, order)):
                self._values[(unit, address + offset)] = word
            self._scripts.pop((unit, address), None)

    def script(
        self,
        unit: int,
        address: int,
        values: Iterable[int],
        words: int = 1,
        order: WordOrder = "big",
    ) -> None:
        """Serve these values one read after another, then hold the last one."""
        frames = deque(words_of(v, words, order) for v in values)
        with self._lock:
            self._scripts[(unit, address)] = frames

    def script_done(self, unit: int, address: int) -> bool:
        with self._lock:
            return len(self._scripts.get((unit, address), ())) <= 1  # holding the last one

    def start(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._listen())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="modbus-devices", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]

    def stop(self) -> None:
        """Power the devices off: from now on nothing answers."""
        if self._thread is None:
            return
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop.close()

    async def _listen(self) -> None:
        devices = [
            SimDevice(
                id=unit,
                simdata=[SimData(0, count=self.REGISTERS, datatype=DataType.REGISTERS)],
                action=self._make_action(unit),
            )
            for unit in self.units
        ]
        self._server = ModbusSerialServer(
            devices,
            framer=FramerType.RTU,
            port=self.port,
            baudrate=115200,
            ignore_missing_devices=True,  # an absent unit stays silent, as on a real bus
        )
        await self._server.serve_forever(background=True)

    def _make_action(self, unit: int):  # type: ignore[no-untyped-def]
        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            with self._lock:
                self.reads += 1
                script = self._scripts.get((unit, address))
                if script:
                    frame = script.popleft() if len(script) > 1 else script[0]
                    for offset, word in enumerate(frame):
                        self._values[(unit, address + offset)] = word
                for offset in range(count):
                    word = self._values.get((unit, address + offset), 0)
                    registers[address + offset - start_address] = word
            return None

        return action
