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

    @model_validator(mode="after")
    def _lock_stays_off_from_power_on(self) -> GpioConfig:
        problem = lock_relay_power_on_problem(self.lock_relay)
        if problem:
            raise ValueError(f"lock_relay: {problem}")
        return self

    def open_loop_warnings(self) -> list[str]:
        """Alarm contacts wired normally-open: a cut wire reads as "all quiet"."""
        return [
            f"hardware.gpio.{name}: normally-open loop: a cut or unplugged wire reads as "
            f"{ALL_QUIET[name]}; wire a normally-closed contact and set normally_closed = true"
            for name in ALARM_LOOPS
            if (line := getattr(self, name)) is not None and not line.normally_closed
        ]


# The Raspberry Pi's SoCs (BCM2835 to BCM2712/RP1) hold GPIO 0-8 pulled up and 9-27
# pulled down from power-on until software configures them; 14/15 may be handed to the
# UART by the firmware before Linux runs (TXD idles high, a boot console toggles it).
PULLED_UP_AT_POWER_ON = range(0, 9)
UART_PINS = (14, 15)
ALARM_LOOPS = ("door", "tamper", "leak")
ALL_QUIET = {"door": "door shut", "tamper": "enclosure shut", "leak": "floor dry"}


def lock_relay_power_on_problem(relay: GpioOutput | None) -> str | None:
    """Why this lock relay could be energised (the cabinet open) before the agent runs.

    Active-high: energised while the line is high, so a pin pulled up at power-on pulls
    it in. Active-low ("low-level trigger" modules): energised whenever the line is not
    actively driven high: while the Pi is off or booting with the relay board powered
    (an unpowered GPIO clamps its input low), on any pin pulled down at power-on, and a
    3.3 V high does not reliably turn a 5 V low-level module off. No pin makes that
    fail-secure, so an active-low lock relay is refused; put a transistor stage in front
    (then the line is active-high) or use a high-level trigger module.
    """
    if relay is None:
        return None
    if not relay.active_high:
        return (
            f"an active-low relay on GPIO {relay.pin} pulls in whenever the Pi does not drive "
            "the line high (Pi off or booting, pin pulled down at power-on): the cabinet "
            "could open before the agent runs; use a high-level trigger relay "
            "(active_high = true) on GPIO 9-27"
        )
    if relay.pin in PULLED_UP_AT_POWER_ON:
        return (
            f"GPIO {relay.pin} is pulled up at power-on, which energises an active-high relay "
            "before the agent runs: the cabinet would open; use a pin pulled down at power-on "
            "(GPIO 9-27, not 14/15)"
        )
    if relay.pin in UART_PINS:
        return (
            f"GPIO {relay.pin} may be the UART at boot (TXD idles high): the relay could "
            "pull in before the agent runs; use another pin of GPIO 9-27"
        )
    return None


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
