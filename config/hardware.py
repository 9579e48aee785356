"""The `[hardware]` part of agent.toml: which backend drives each part of the cabinet.

Each part (GPIO lines, card readers, scales/VOC, the cabinet MCU link, the simulated
cabinet) is optional; `drivers.registry` builds one driver per configured part. Pins and
register maps live here, so an installer rewires the box without touching code.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

Pin = Annotated[StrictInt, Field(ge=0, le=63)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpioInput(_Strict):
    pin: Pin
    active_high: StrictBool = False  # reed switches and dry contacts usually pull low
    pull_up: StrictBool = True
    # A normally-closed loop reads "active" when all is well; a cut wire then reads
    # exactly like an open door or a wet sensor, which is the fail-safe reading.
    normally_closed: StrictBool = False


class GpioOutput(_Strict):
    pin: Pin
    active_high: StrictBool = True


class GpioConfig(_Strict):
    pin_factory: Literal["default", "mock", "lgpio", "rpigpio"] = "default"
    debounce_ms: Annotated[StrictInt, Field(ge=0, le=2000)] = 30
    door: GpioInput | None = None
    lock_feedback: GpioInput | None = None
    tamper: GpioInput | None = None
    leak: GpioInput | None = None
    lock_relay: GpioOutput | None = None
    fan: GpioOutput | None = None
    buzzer: GpioOutput | None = None
    led_green: GpioOutput | None = None
    led_red: GpioOutput | None = None


class ReadersConfig(_Strict):
    backend: Literal["pcsc"] = "pcsc"
    a_pattern: str = "00 00$"  # regular expression on the PC/SC reader name
    b_pattern: str = "00 01$"
    poll_timeout_ms: Annotated[StrictInt, Field(ge=50, le=10_000)] = 500


class RegisterMap(_Strict):
    unit: Annotated[StrictInt, Field(ge=1, le=247)]
    address: Annotated[StrictInt, Field(ge=0, le=65535)]
    words: Literal[1, 2] = 2
    signed: StrictBool = False
    word_order: Literal["big", "little"] = "big"
    scale_num: StrictInt = 1  # value = raw * scale_num / scale_den, in mg or ppb
    scale_den: Annotated[StrictInt, Field(gt=0)] = 1
    min_value: StrictInt = 0
    max_value: StrictInt = 2**31 - 1


class ScaleMap(RegisterMap):
    slot: Annotated[StrictInt, Field(ge=0)]


class ModbusConfig(_Strict):
    port: str
    baudrate: StrictInt = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout_ms: Annotated[StrictInt, Field(ge=10, le=10_000)] = 300
    period_ms: Annotated[StrictInt, Field(ge=50)] = 1000
    median_of: Annotated[StrictInt, Field(ge=1, le=15)] = 5
    silent_after_s: Annotated[StrictInt, Field(ge=1)] = 10
    scales: tuple[ScaleMap, ...] = ()
    voc: RegisterMap | None = None


class BridgeConfig(_Strict):
    port: str
    baudrate: StrictInt = 115200
    heartbeat_ms: Annotated[StrictInt, Field(ge=50, le=10_000)] = 500
    failsafe_ms: Annotated[StrictInt, Field(ge=200, le=60_000)] = 3000
    ack_timeout_ms: Annotated[StrictInt, Field(ge=10, le=5_000)] = 200
    retries: Annotated[StrictInt, Field(ge=0, le=20)] = 5


class SimConfig(_Strict):
    enabled: StrictBool = True


class HardwareConfig(_Strict):
    gpio: GpioConfig | None = None
    readers: ReadersConfig | None = None
    modbus: ModbusConfig | None = None
    bridge: BridgeConfig | None = None
    sim: SimConfig | None = None

    @property
    def simulated(self) -> bool:
        return self.sim is not None and self.sim.enabled
