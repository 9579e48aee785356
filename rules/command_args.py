"""The centre's commands, typed once: one parser from a command's `args` to a typed input.

The downlink verifier (agent/commands.py) and the scenario reader (drivers/scenario.py)
both turn `(name, args)` into one of these with `parse_command`, so a command means the
same, with the same bounds, wherever it comes from; the rules receive only typed
commands. `policy` is not here: its argument is a signed document the verifier opens.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

# The largest integer every JSON reader keeps exactly: no command number goes beyond it.
MAX_SAFE_INT: Final = 2**53 - 1

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
# Free text (a comment, a purpose): 1-500 characters, no control characters.
FreeText = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]
Count = Annotated[StrictInt, Field(gt=0, le=MAX_SAFE_INT)]


class BadArgs(ValueError):
    """The args can never be valid for this command (`bad_args`)."""


class UnknownCommand(ValueError):
    """No command of this name (`unknown_command`)."""


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    NAME: ClassVar[str]

    def record(self) -> dict[str, Any]:
        """The args as the record shows them (`command.applied` / `command.rejected`)."""
        return self.model_dump()


class Approve(_Command):
    """A remote second person for the pending badge of `person` (if `remote_second`)."""

    NAME = "approve"
    person: Id
    by: Id  # the approver, a person of the policy; recorded as the second person


class ApproveWithdrawal(_Command):
    """An approved amount for a later session holding all of `persons`."""

    NAME = "approve_withdrawal"
    container: Id
    max_mg: Count
    persons: Annotated[list[Id], Field(min_length=1, max_length=8)]
    until_ms: Count
    by: Id  # the approver, keeper or safety officer (the centre fills it)
    purpose: FreeText  # what it is for (用途), recorded with the withdrawal

    def record(self) -> dict[str, Any]:
        return {**self.model_dump(), "persons": sorted(self.persons)}


class ApproveDisposal(_Command):
    """The container may leave for good (处置) in a later session holding all of `persons`."""

    NAME = "approve_disposal"
    container: Id
    persons: Annotated[list[Id], Field(min_length=1, max_length=8)]
    until_ms: Count
    by: Id  # the approver, keeper or safety officer
    purpose: FreeText  # why it leaves (e.g. to the licensed waste contractor)

    def record(self) -> dict[str, Any]:
        return {**self.model_dump(), "persons": sorted(self.persons)}


class Ack(_Command):
    """Silence an alarm (buzzer off, `alarm.acknowledged`); it stays open."""

    NAME = "ack"
    alarm: Id
    by: Id  # who acknowledged, for the record (any valid person of the policy)
    comment: FreeText | None = None


ResolveReason = Literal[
    "recount", "evaporation", "spill", "scale_fault", "delivery_error", "theft_reported", "other"
]


RESOLVE_REASONS: Final = get_args(ResolveReason)


class Resolve(_Command):
    """Close a discrepancy of the books: two keepers or safety officers set the book to
    the settled measured content (`inventory.adjusted`), then the alarm clears."""

    NAME = "resolve"
    alarm: Id
    reason: ResolveReason
    persons: Annotated[list[Id], Field(min_length=2, max_length=2)]
    comment: FreeText | None = None

    def record(self) -> dict[str, Any]:
        # `reason` of command.applied/rejected is the cabinet's answer: the code travels
        # beside it as `reason_code`.
        data = self.model_dump()
        data["reason_code"] = data.pop("reason")
        return data

    @model_validator(mode="after")
    def _explained(self) -> Resolve:
        if self.reason == "other" and self.comment is None:
            raise ValueError("reason 'other' needs a comment")
        return self


class Stocktake(_Command):
    """Two keepers or safety officers attest the stock now (`inventory.stocktake`)."""

    NAME = "stocktake"
    persons: Annotated[list[Id], Field(min_length=2, max_length=2)]


class Snapshot(_Command):
    NAME = "snapshot"


class Resend(_Command):
    """Publish the outbox range again."""

    NAME = "resend"
    from_seq: Count
    to_seq: Count

    @model_validator(mode="after")
    def _ordered(self) -> Resend:
        if self.to_seq < self.from_seq:
            raise ValueError("to_seq is below from_seq")
        return self


Command = (
    Approve | ApproveWithdrawal | ApproveDisposal | Ack | Resolve | Stocktake | Snapshot | Resend
)
COMMANDS: Final[dict[str, type[_Command]]] = {
    c.NAME: c
    for c in (
        Approve,
        ApproveWithdrawal,
        ApproveDisposal,
        Ack,
        Resolve,
        Stocktake,
        Snapshot,
        Resend,
    )
}


# The args that name a person (or the alarm / container a command is about): what a
# refusal keeps of args it could not accept, so that the record still names who asked.
NAMING_ARGS: Final = ("person", "persons", "by", "alarm", "container")
_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def readable_ids(args: object) -> dict[str, Any]:
    """The naming args that can be read as ids (a list of at most 8 ids for `persons`);
    anything else — a wrong type, an over-long or odd string — is left out, so that only
    short plain ids from a signed command reach a signed refusal."""
    if not isinstance(args, dict):
        return {}
    kept: dict[str, Any] = {}
    for key in NAMING_ARGS:
        value = args.get(key)
        if _is_id(value):
            kept[key] = value
        elif isinstance(value, list) and 0 < len(value) <= 8 and all(map(_is_id, value)):
            kept[key] = sorted(value)
    return kept


def _is_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def parse_command(name: str, args: object) -> Command:
    """`args` of command `name` as its typed input; raise UnknownCommand or BadArgs."""
    model = COMMANDS.get(name)
    if model is None:
        raise UnknownCommand(name)
    try:
        command = model.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "args"
        raise BadArgs(f"{where}: {first['msg']}") from None
    assert isinstance(command, Command)
    return command
