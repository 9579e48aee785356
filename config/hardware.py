"""The `[hardware]` part of agent.toml: which backend drives each part of the cabinet.

Each part (GPIO lines, card readers, scales/VOC, the cabinet MCU link, the simulated
cabinet) is optional; `drivers.registry` builds one driver per configured part. Pins and
register maps live here, so an installer rewires the box without touching code.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

Pin = Annotated[StrictInt, Field(ge=0, le=63)]
DebounceMs = Annotated[StrictInt, Field(ge=0, le=2000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpioInput(_Strict):
    """One contact wired to a GPIO line.

    Each input has a *normal* state: door closed, enclosure shut, floor dry, bolt thrown.
    The contact is "active" when the line sits at `active_high`'s level. A normally-open
    (NO) contact is active when the input is abnormal (door open, wet, tamper, bolt
    released); a normally-closed (NC) loop is active while all is well, so a cut wire
    reads exactly like an open door or a wet sensor, which is the fail-safe reading and
    is posted like any other change.

    `pull_up`: true enables the internal pull-up, false the pull-down, "external" leaves
    the line floating for an external resistor (TOML has no null).
    """

    pin: Pin
    active_high: StrictBool = False  # reed switches and dry contacts usually pull low
    pull_up: StrictBool | None = True

    @field_validator("pull_up", mode="before")
    @classmethod
    def _external(cls, value: object) -> object:
        if value == "external":
            return None
        if isinstance(value, str):
            raise ValueError('pull_up is true, false or "external"')
        return value
    normally_closed: StrictBool = False
    debounce_ms: DebounceMs | None = None  # None: the `[hardware.gpio]` debounce_ms


class GpioOutput(_Strict):
    pin: Pin
    active_high: StrictBool = True


_LINES = (
    "door",
    "lock_feedback",
    "tamper",
    "leak",
    "lock_relay",
    "fan",
    "buzzer",
    "led_green",
    "led_red",
)


class GpioConfig(_Strict):
    pin_factory: Literal["default", "mock", "lgpio", "rpigpio"] = "default"
    debounce_ms: DebounceMs = 30
    door: GpioInput | None = None
    lock_feedback: GpioInput | None = None
    tamper: GpioInput | None = None
    leak: GpioInput | None = None
    lock_relay: GpioOutput | None = None
    fan: GpioOutput | None = None
    buzzer: GpioOutput | None = None
    led_green: GpioOutput | None = None
    led_red: GpioOutput | None = None

    @model_validator(mode="after")
    def _one_line_one_use(self) -> GpioConfig:
        seen: dict[int, str] = {}
        for name in _LINES:
            line: GpioInput | GpioOutput | None = getattr(self, name)
            if line is None:
                continue
            if line.pin in seen:
                raise ValueError(f"{name}.pin: GPIO {line.pin} is already used by {seen[line.pin]}")
            seen[line.pin] = name
        return self


class ReadersConfig(_Strict):
    backend: Literal["pcsc"] = "pcsc"
    a_pattern: str = "00 00$"  # regular expression searched in the PC/SC reader name
    b_pattern: str = "00 01$"
    poll_timeout_ms: Annotated[StrictInt, Field(ge=50, le=10_000)] = 500
    # While pcscd is gone, how often to try to reach it again.
    reconnect_ms: Annotated[StrictInt, Field(ge=50, le=10_000)] = 500

    @field_validator("a_pattern", "b_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RegisterMap(_Strict):
    """Where one value lives on the RS-485 bus and how to turn it into mg or ppb."""

    unit: Annotated[StrictInt, Field(ge=1, le=247)]
    address: Annotated[StrictInt, Field(ge=0, le=65535)]
    table: Literal["holding", "input"] = "holding"  # function code 3 or 4
    words: Literal[1, 2] = 2
    signed: StrictBool = False
    word_order: Literal["big", "little"] = "big"  # "big": the high word comes first
    scale_num: StrictInt = 1  # value = raw * scale_num / scale_den, in mg or ppb
    scale_den: Annotated[StrictInt, Field(gt=0)] = 1
    min_value: StrictInt = 0  # after scaling; outside [min, max] is a sensor fault
    max_value: StrictInt = 2**31 - 1

    @model_validator(mode="after")
    def _range(self) -> RegisterMap:
        if self.min_value > self.max_value:
            raise ValueError("min_value is above max_value")
        if self.scale_num == 0:
            raise ValueError("scale_num must not be 0")
        return self


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

    @model_validator(mode="after")
    def _distinct_slots(self) -> ModbusConfig:
        slots = [scale.slot for scale in self.scales]
        duplicates = sorted({slot for slot in slots if slots.count(slot) > 1})
        if duplicates:
            raise ValueError(f"scales: slot {duplicates[0]} is mapped twice")
        return self


class BridgeConfig(_Strict):
    port: str
    baudrate: StrictInt = 115200
    heartbeat_ms: Annotated[StrictInt, Field(ge=50, le=10_000)] = 500
    failsafe_ms: Annotated[StrictInt, Field(ge=200, le=60_000)] = 3000
    ack_timeout_ms: Annotated[StrictInt, Field(ge=10, le=5_000)] = 200
    retries: Annotated[StrictInt, Field(ge=0, le=20)] = 5
    # Hold time sent with every unlock: the MCU re-locks by itself when it runs out, even
    # if the agent's lock command is lost. Keep it above the policy's unlock_s.
    unlock_max_ms: Annotated[StrictInt, Field(ge=1_000, le=600_000)] = 30_000
    # The outputs wired to the MCU board (the rest may be on GPIO).
    outputs: tuple[Literal["lock", "fan", "buzzer", "led_green", "led_red"], ...] = (
        "lock",
        "fan",
        "buzzer",
    )


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

    def output_owners(self) -> dict[str, list[str]]:
        """Which configured parts drive each output (lock, fan, buzzer, LEDs)."""
        owners: dict[str, list[str]] = {}
        if self.gpio is not None:
            wired = {
                "lock": self.gpio.lock_relay,
                "fan": self.gpio.fan,
                "buzzer": self.gpio.buzzer,
                "led_green": self.gpio.led_green,
                "led_red": self.gpio.led_red,
            }
            for output, line in wired.items():
                if line is not None:
                    owners.setdefault(output, []).append("gpio")
        if self.bridge is not None:
            for output in self.bridge.outputs:
                owners.setdefault(output, []).append("bridge")
        if self.simulated:
            for output in ("lock", "fan", "buzzer", "led_green", "led_red"):
                owners.setdefault(output, []).append("sim")
        return owners

    @model_validator(mode="after")
    def _one_driver_per_output(self) -> HardwareConfig:
        # Two drivers switching one lock relay would fight; refuse it when the file is
        # read (check-config, start-up), before anything is started or recorded.
        clashes = [
            f"output {o!r} is wired to both {' and '.join(p)}"
            for o, p in self.output_owners().items()
            if len(p) > 1
        ]
        if clashes:
            raise ValueError("; ".join(clashes) + " (one driver per output)")
        return self
