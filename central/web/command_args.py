"""The arguments of each command as the API accepts them: checked before anything is signed.

Input that can never pass on the cabinet (a wrong type, an unknown reason code, a
comment with control characters) is refused here with a clear message, so a signed
command is only ever sent when it can mean something. `by` is never accepted from the
caller: the centre fills it with the signed-in person.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from rules.command_args import ResolveReason


def _free_text(text: str) -> str:
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise ValueError("no control characters (line breaks, tabs) allowed")
    return text


FreeText = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_free_text)]
PersonId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
AlarmId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
ContainerId = Annotated[str, Field(min_length=1, max_length=64)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Ack(_Args):
    alarm: AlarmId
    comment: FreeText | None = None


class Approve(_Args):
    person: PersonId


class ApproveWithdrawal(_Args):
    container: ContainerId
    max_mg: int = Field(gt=0)
    persons: list[PersonId] = Field(min_length=1, max_length=2)
    until_ms: int = Field(gt=0)
    purpose: FreeText


class ApproveDisposal(_Args):
    container: ContainerId
    persons: list[PersonId] = Field(min_length=1, max_length=2)
    until_ms: int = Field(gt=0)
    purpose: FreeText


class _TwoPersons(_Args):
    persons: list[PersonId] = Field(min_length=2, max_length=2)

    @model_validator(mode="after")
    def _distinct(self) -> Any:
        if self.persons[0] == self.persons[1]:
            raise ValueError("persons: two different people")
        return self


class Resolve(_TwoPersons):
    alarm: AlarmId
    reason: ResolveReason  # the cabinet's own list: one owner of the codes
    comment: FreeText | None = None

    @model_validator(mode="after")
    def _other_needs_comment(self) -> Any:
        if self.reason == "other" and not self.comment:
            raise ValueError("reason 'other' needs a comment")
        return self


class Stocktake(_TwoPersons):
    pass


class Snapshot(_Args):
    pass


class Resend(_Args):
    from_seq: int = Field(ge=1)
    to_seq: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Any:
        if self.to_seq < self.from_seq:
            raise ValueError("to_seq must not be below from_seq")
        return self


class PolicyUpdate(_Args):
    policy: dict[str, Any]


ARGS: dict[str, type[_Args]] = {
    "ack": Ack,
    "approve": Approve,
    "approve_withdrawal": ApproveWithdrawal,
    "approve_disposal": ApproveDisposal,
    "resolve": Resolve,
    "stocktake": Stocktake,
    "snapshot": Snapshot,
    "resend": Resend,
    "policy": PolicyUpdate,
}

# Commands whose record names two people: the signed-in person must be one of them, so
# the centre never signs a two-person act in the name of two other people.
TWO_PERSON = frozenset({"resolve", "stocktake"})


class BadArgs(ValueError):
    """The arguments can never pass; `message` says why, in a line a person can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def checked_args(name: str, body: object, person: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadArgs("the body must be a JSON object of the command's arguments")
    if "by" in body:
        raise BadArgs("'by' is filled in by the centre with the signed-in person; leave it out")
    try:
        args = ARGS[name].model_validate(body)
    except ValidationError as error:
        raise BadArgs("; ".join(_describe(e) for e in error.errors())) from None
    if name in TWO_PERSON and person not in body["persons"]:
        raise BadArgs(f"persons: you ({person}) must be one of the two people")
    return args.model_dump()


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "body"
    return f"{where}: {error.get('msg', 'invalid')}"
