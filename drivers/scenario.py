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

from config.policy import Policy
from rules import inputs as i
from rules.command_args import BadArgs, UnknownCommand, parse_command, readable_ids

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


class RestartLine(_Line):
    """A power cut and restart at `t`: boot + 1, same outbox and state.

    (docs/rules.md, "The cabinet remembers")
    """

    input: Literal["restart"]


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
    | TickLine
    | RestartLine,
    Field(discriminator="input"),
]
_LINE = TypeAdapter(Line)


@dataclass(frozen=True)
class Step:
    at_ms: int
    line: int
    input: i.AnyInput | SimLine


@dataclass(frozen=True)
class Scenario:
    start_wall_ms: int
    steps: list[Step]

    @property
    def end_ms(self) -> int:
        return self.steps[-1].at_ms if self.steps else 0


# Lines for the simulated world or the replay itself, not inputs of the rules.
SimLine = SilenceLine | ResumeLine | RestartLine


def to_input(line: Any, number: int) -> i.AnyInput | SimLine:
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
        case CommandLine() if line.name == "policy":
            return _policy_line(line, number)
        case CommandLine():
            return command_input(line.name, line.args, f"scenario-line-{number}")
        case ReaderFaultLine():
            return i.ReaderFault(line.reader, line.detail)
        case ReaderOkLine():
            return i.ReaderRecovered(line.reader)
        case TickLine():
            return i.Tick()
    assert isinstance(line, SilenceLine | ResumeLine | RestartLine)
    return line  # for the simulated cabinet or the replay, not the rules


def command_input(name: str, args: object, nonce: str) -> i.CommandReceived | i.CommandRejected:
    """A trusted command line, typed like a signed one; args that can never be valid are
    recorded as refused (`bad_args`, `unknown_command`), as the downlink would."""
    try:
        return i.CommandReceived(parse_command(name, args), nonce)
    except UnknownCommand:
        return i.CommandRejected(name, nonce, "unknown_command", readable_ids(args))
    except BadArgs:
        return i.CommandRejected(name, nonce, "bad_args", readable_ids(args))


def _policy_line(line: CommandLine, number: int) -> i.PolicyLoaded:
    """Replay trusts a `policy` line like any command line: the policy is plain JSON."""
    if set(line.args) != {"policy"} or not isinstance(line.args["policy"], dict):
        raise ScenarioError(number, 'a policy line\'s args are exactly {"policy": {...}}')
    try:
        policy = Policy.model_validate(line.args["policy"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ScenarioError(number, f"policy.{where}: {first['msg']}") from None
    return i.PolicyLoaded(policy, None, "command", f"scenario-line-{number}")


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
        except RecursionError:  # json.loads recurses once per level of nesting
            raise ScenarioError(number, "not JSON: nested too deep") from None
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
