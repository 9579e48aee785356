"""What the cabinet can tell the rules: typed, immutable inputs.

Drivers (GPIO, PC/SC, Modbus, the MCU bridge, the simulator) and the downlink produce
exactly these and nothing else; the core feeds them to `CabinetRules.step`. Units are in
the field names, integers only, like the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rules.command_args import Command
from rules.timers import TimerKey

ReaderName = Literal["A", "B"]
SensorName = str  # "voc", "leak", "door", "scale:<slot>", ...


@dataclass(frozen=True, slots=True)
class Badge:
    """A card presented once on a reader (a card left lying there is not a new badge)."""

    reader: ReaderName
    uid: str  # upper-case hex


@dataclass(frozen=True, slots=True)
class DoorChanged:
    open: bool


@dataclass(frozen=True, slots=True)
class LockFeedback:
    """The lock's own sensor: bolt thrown (engaged) or not."""

    engaged: bool


@dataclass(frozen=True, slots=True)
class WeightReading:
    slot: int
    mg: int


@dataclass(frozen=True, slots=True)
class VocReading:
    ppb: int


@dataclass(frozen=True, slots=True)
class LeakChanged:
    wet: bool


@dataclass(frozen=True, slots=True)
class TamperChanged:
    open: bool


@dataclass(frozen=True, slots=True)
class SensorFault:
    """A sensor went silent, read out of range, or failed its protocol (CRC, timeout)."""

    sensor: SensorName
    detail: str


@dataclass(frozen=True, slots=True)
class SensorRecovered:
    sensor: SensorName


@dataclass(frozen=True, slots=True)
class UplinkTrouble:
    """The broker has refused publishes for a while (not authorised, quota): the record
    is kept and retried, but someone should look at the broker's configuration."""

    detail: str


@dataclass(frozen=True, slots=True)
class UplinkRecovered:
    """The broker takes the record again."""


@dataclass(frozen=True, slots=True)
class ReaderFault:
    reader: ReaderName
    detail: str


@dataclass(frozen=True, slots=True)
class ReaderRecovered:
    reader: ReaderName


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """A command that has passed signature, device, expiry and nonce checks (or replay),
    its args already typed (rules.command_args); the rules check what it means now (is
    that person pending, does that container exist)."""

    command: Command
    nonce: str = ""

    @property
    def name(self) -> str:
        return self.command.NAME


@dataclass(frozen=True, slots=True)
class PolicyLoaded:
    """A verified policy to enforce from now on (`policy` is a config.policy.Policy).

    The rules still refuse it unless its version is above the current one and it is
    meant for this cabinet; `document` is the signed JSON to persist once accepted
    (None for a plain TOML policy in simulation).
    """

    policy: Any
    document: dict[str, Any] | None = None
    source: str = "command"  # "command", "file", "startup"
    nonce: str = ""


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: TimerKey


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes; nothing else happened (lets scenario files advance the clock)."""


@dataclass(frozen=True, slots=True)
class Started:
    """The agent started: `state` is the durable rule state committed last (None on a
    first start), `resumed_from_seq` the last seq committed before this boot."""

    version: str
    boot: int
    resumed_from_seq: int = 0
    state: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Time for `system.heartbeat`; `data` carries what the core knows (outbox, uplink)."""

    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClockStatus:
    """Whether the wall clock is synchronised (kernel NTP status), at start and on change."""

    synchronized: bool


@dataclass(frozen=True, slots=True)
class Reloaded:
    """SIGHUP handled: what was reloaded, or why a change was refused (needs a restart)."""

    applied: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Stopping:
    reason: str = "signal"


Input = (
    Badge
    | DoorChanged
    | LockFeedback
    | WeightReading
    | VocReading
    | LeakChanged
    | TamperChanged
    | SensorFault
    | SensorRecovered
    | UplinkTrouble
    | UplinkRecovered
    | ReaderFault
    | ReaderRecovered
    | CommandReceived
    | PolicyLoaded
    | TimerFired
    | Tick
    | Started
    | Heartbeat
    | ClockStatus
    | Reloaded
    | Stopping
)


@dataclass(frozen=True, slots=True)
class CommandRejected:
    """The downlink refused a command (bad signature, expired, replayed, malformed).

    Posted to the core only so that the refusal is recorded as an event by the one
    writer; it changes no state.
    """

    name: str
    nonce: str
    reason: str
    # The ids the command's args name, as far as they could be read (`readable_ids`):
    # only for a command whose signature verified, so a forgery names no one.
    named: dict[str, Any] = field(default_factory=dict)


AnyInput = Input | CommandRejected
