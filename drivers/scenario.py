"""Scenario files (replay, run --scenario): one JSON object per line, an input at `t` s.

Parsing is strict: an unknown input kind, a missing or misspelt field, a wrong type or
time going backwards is a `ScenarioError` naming the line, never a silent skip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
)

from rules import inputs as i

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
Seconds = Annotated[float, Field(ge=0, le=10 * 365 * 86400, allow_inf_nan=False)]


class ScenarioError(ValueError):
    def __init__(self, line: int, message: str):
        self.line = line
        super().__init__(f"line {line}: {message}")


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    t: Seconds


class BadgeLine(_Line):
    input: Literal["badge"]
    reader: Literal["A", "B"]
    uid: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{4,20}$")]


class DoorLine(_Line):
    input: Literal["door"]
    state: Literal["open", "closed"]


class WeightLine(_Line):
    input: Literal["weight"]
    slot: Annotated[StrictInt, Field(ge=0)]
    mg: StrictInt


class VocLine(_Line):
    input: Literal["voc"]
    ppb: StrictInt


class LeakLine(_Line):
    input: Literal["leak"]
    wet: StrictBool


class TamperLine(_Line):
    input: Literal["tamper"]
    open: StrictBool


class LockFeedbackLine(_Line):
    input: Literal["lock_feedback"]
    engaged: StrictBool


class CommandLine(_Line):
    input: Literal["command"]
    name: str
    args: dict[str, Any] = {}


class SilenceLine(_Line):
    input: Literal["silence"]
    sensor: str  # "voc" or "scale:<slot>"


class ResumeLine(_Line):
    input: Literal["resume"]
    sensor: str


class ReaderFaultLine(_Line):
    input: Literal["reader_fault"]
    reader: Literal["A", "B"]
    detail: str = "unplugged"


class ReaderOkLine(_Line):
    input: Literal["reader_ok"]
    reader: Literal["A", "B"]


class TickLine(_Line):
    input: Literal["tick"]


Line = Annotated[
    BadgeLine
    | DoorLine
    | WeightLine
    | VocLine
    | LeakLine
    | TamperLine
    | LockFeedbackLine
    | CommandLine
    | SilenceLine
    | ResumeLine
    | ReaderFaultLine
    | ReaderOkLine
    | TickLine,
    Field(discriminator="input"),
]
_LINE = TypeAdapter(Line)


@dataclass(frozen=True)
class Step:
    at_ms: int
    line: int
    input: i.AnyInput | SilenceLine | ResumeLine


@dataclass(frozen=True)
class Scenario:
    start_wall_ms: int
    steps: list[Step]

    @property
    def end_ms(self) -> int:
        return self.steps[-1].at_ms if self.steps else 0


def to_input(line: Any, number: int) -> i.AnyInput | SilenceLine | ResumeLine:
    match line:
        case BadgeLine():
            return i.Badge(line.reader, line.uid.upper())
        case DoorLine():
            return i.DoorChanged(line.state == "open")
        case WeightLine():
            return i.WeightReading(line.slot, line.mg)
        case VocLine():
            return i.VocReading(line.ppb)
        case LeakLine():
            return i.LeakChanged(line.wet)
        case TamperLine():
            return i.TamperChanged(line.open)
        case LockFeedbackLine():
            return i.LockFeedback(line.engaged)
        case CommandLine():
            return i.CommandReceived(line.name, dict(line.args), f"scenario-line-{number}")
        case ReaderFaultLine():
            return i.ReaderFault(line.reader, line.detail)
        case ReaderOkLine():
            return i.ReaderRecovered(line.reader)
        case TickLine():
            return i.Tick()
    assert isinstance(line, SilenceLine | ResumeLine)
    return line  # silence/resume: for the simulated cabinet, not the rules


def parse_scenario(text: str) -> Scenario:
    start = DEFAULT_START
    steps: list[Step] = []
    last_ms = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise ScenarioError(number, f"not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ScenarioError(number, "expected a JSON object")
        if "start" in obj and not steps:
            start = _parse_start(obj, number)
            continue
        try:
            parsed = _LINE.validate_python(obj)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ScenarioError(
                number, f"{where}: {first['msg']}" if where else first["msg"]
            ) from None
        at_ms = round(parsed.t * 1000)
        if at_ms < last_ms:
            raise ScenarioError(number, f"t={parsed.t} goes back in time (previous line is later)")
        last_ms = at_ms
        steps.append(Step(at_ms, number, to_input(parsed, number)))
    return Scenario(int(start.timestamp() * 1000), steps)


def _parse_start(obj: dict[str, Any], number: int) -> datetime:
    if set(obj) != {"start"} or not isinstance(obj["start"], str):
        raise ScenarioError(number, 'the start line is exactly {"start": "<RFC 3339>"}')
    try:
        start = datetime.fromisoformat(obj["start"].replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(number, f"start {obj['start']!r} is not an RFC 3339 time") from None
    if start.tzinfo is None:
        raise ScenarioError(number, "start needs a timezone (e.g. Z)")
    return start
