"""What `cabinetctl` checks before it signs a command that names persons.

A signed command is the centre's word: once signed it is valid until it expires, whoever
carries it to the cabinet. So cabinetctl judges every person it names against the
cabinet's policy first, with the cabinet's own rules (the pair rule, roles, validity
dates, suspension, free-text limits), and signs nothing the cabinet would refuse. The
cabinet checks again when it applies the command: this is the early, readable refusal,
not the only one.

The policy comes from `--policy` (or CABINETCTL_POLICY): a policy TOML, its signed JSON
(believed only if it verifies with the central key), or a directory of them, of which
the newest one for the cabinet is used. Without one the command is refused, unless the
operator says `--unchecked` (the cabinet alone judges then, and a warning says so).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import TypeAdapter, ValidationError

from agent.wire import VerifyKey
from central.errors import CentralError
from central.policy_tools import VersionBook, load_policy_quietly, load_signed_policy
from config.policy import Person, Policy
from rules.access import APPROVER_ROLES, pair_allowed
from rules.command_args import FreeText

F = TypeVar("F", bound=Callable[..., Any])

POLICY_ENV = "CABINETCTL_POLICY"
QUALIFIED = "keeper or safety_officer"

POLICY_HELP = (
    "the cabinet's policy: its TOML, its signed JSON, or a directory of them (the newest "
    f"for the cabinet is used); env {POLICY_ENV}. Every person named is checked against it "
    "before anything is signed: a signed command stays valid until it expires, so a wrong "
    "or suspended person is refused here, not carried to the cabinet"
)
UNCHECKED_HELP = (
    "send without checking against a policy, when no copy is at hand: the cabinet alone "
    "judges the command (and refuses what its policy does not allow)"
)


def policy_check_options(func: F) -> F:
    """--policy and --unchecked, for every command that names persons."""
    func = click.option("--unchecked", is_flag=True, help=UNCHECKED_HELP)(func)
    return click.option(
        "--policy",
        "policy_path",
        type=click.Path(path_type=Path, exists=True),
        envvar=POLICY_ENV,
        help=POLICY_HELP,
    )(func)


@dataclass(frozen=True)
class CabinetPolicy:
    """The policy the persons are judged by, and how to name it in a message."""

    policy: Policy
    source: str
    device: str
    now_ms: int

    @property
    def label(self) -> str:
        return f"policy version {self.policy.version} ({self.source})"

    def person(self, option: str, person_id: str) -> Person:
        """The person `person_id`, valid now; a name instead of an id gets its id named."""
        person = self.policy.person_by_id(person_id)
        if person is None:
            raise CentralError(
                f"{option} {person_id!r} is not a person id of {self.label}{self._guess(person_id)}"
            )
        if person.suspended:
            raise CentralError(f"{option} {person_id!r} is suspended in {self.label}")
        if not person.valid_at(self.now_ms):
            raise CentralError(
                f"{option} {person_id!r} is outside their validity dates in {self.label} "
                f"({_dates(person)})"
            )
        return person

    def qualified(self, option: str, person_id: str) -> Person:
        """A valid person holding keeper or safety_officer (who may change the books)."""
        person = self.person(option, person_id)
        if not APPROVER_ROLES & set(person.roles):
            raise CentralError(
                f"{option} {person_id!r} is neither keeper nor safety_officer "
                f"(roles: {', '.join(person.roles)})"
            )
        return person

    def container(self, container_id: str) -> None:
        if self.policy.container_by_id(container_id) is None:
            known = ", ".join(c.id for c in self.policy.container) or "none"
            raise CentralError(
                f"--container {container_id!r} is not in {self.label} (containers: {known})"
            )

    def _guess(self, given: str) -> str:
        """'; did you mean p-1001 (Zhang Wei)?' when `given` looks like a name or a typo."""
        wanted = given.casefold().strip()
        by_name = [p for p in self.policy.person if p.name and p.name.casefold() == wanted]
        if not by_name and wanted:
            by_name = [p for p in self.policy.person if p.name and wanted in p.name.casefold()]
        if not by_name:
            ids = difflib.get_close_matches(given, [p.id for p in self.policy.person], n=1)
            by_name = [p for p in self.policy.person if p.id in ids]
        if not by_name:
            return ""
        named = " or ".join(f"{p.id} ({p.name})" if p.name else p.id for p in by_name)
        return f"; did you mean {named}?"


def _dates(person: Person) -> str:
    start = person.valid_from.isoformat() if person.valid_from else "always"
    end = person.valid_until.isoformat() if person.valid_until else "open-ended"
    return f"valid from {start} until {end}"


def cabinet_policy(
    params: dict[str, Any], device_id: str, central: VerifyKey, registry: Path, now_ms: int
) -> CabinetPolicy | None:
    """Pop --policy/--unchecked from `params`: the policy of `device_id`, or None if the
    operator chose --unchecked; refuse when neither is given."""
    path, unchecked = params.pop("policy_path"), params.pop("unchecked")
    if unchecked:
        given = click.get_current_context().get_parameter_source("policy_path")
        if path is not None and given is click.core.ParameterSource.COMMANDLINE:
            raise CentralError("--unchecked and --policy contradict each other: give one")
        click.echo(
            f"WARNING: --unchecked: nothing is checked against {device_id}'s policy before "
            "signing; the cabinet alone judges this command",
            err=True,
        )
        return None
    if path is None:
        raise CentralError(
            f"the persons of this command are checked against {device_id}'s policy before "
            f"it is signed: give --policy FILE (its policy TOML or signed JSON, or a "
            f"directory of them; env {POLICY_ENV}), or --unchecked to let the cabinet alone "
            "judge it"
        )
    policy, source = _policy_for(path, device_id, central)
    _warn_if_older_than_signed(policy, source, device_id, registry)
    return CabinetPolicy(policy, source, device_id, now_ms)


def _policy_for(path: Path, device_id: str, central: VerifyKey) -> tuple[Policy, str]:
    if path.is_dir():
        found = []
        for candidate in sorted(path.iterdir()):
            if candidate.suffix in (".toml", ".json") and candidate.is_file():
                policy = _one_policy(candidate, central)
                if policy.applies_to(device_id):
                    found.append((policy.version, policy, candidate))
        if not found:
            raise CentralError(f"no policy for cabinet {device_id!r} in {path}")
        _, policy, chosen = max(found, key=lambda item: item[0])
        return policy, str(chosen)
    policy = _one_policy(path, central)
    if not policy.applies_to(device_id):
        raise CentralError(f"{path} is for cabinet {policy.cabinet!r}, not {device_id!r}")
    return policy, str(path)


def _one_policy(path: Path, central: VerifyKey) -> Policy:
    if path.suffix == ".json":
        return load_signed_policy(path, central)[1]
    policy = load_policy_quietly(path)
    assert policy is not None
    return policy


def _warn_if_older_than_signed(policy: Policy, source: str, device_id: str, registry: Path) -> None:
    """The record of signed versions beside the registry knows of a newer policy: the
    cabinet may already run it, and these checks may then judge by an old one."""
    floor = VersionBook.beside(registry).floor(device_id)
    if floor is not None and floor[1].version > policy.version:
        whose, signed = floor
        click.echo(
            f"WARNING: {source} is policy version {policy.version}, but version "
            f"{signed.version} was signed for cabinet {whose!r} at {signed.signed_at}: if the "
            "cabinet runs that one, it may judge this command differently",
            err=True,
        )


_FREE_TEXT: TypeAdapter[str] = TypeAdapter(FreeText)


def free_text(option: str, value: str | None) -> None:
    """1-500 characters, no control characters: what the cabinet accepts as a comment or
    purpose (else it refuses the command as bad_args)."""
    if value is None:
        return
    try:
        _FREE_TEXT.validate_python(value)
    except ValidationError:
        if not value:
            raise CentralError(f"{option} is empty: say it in words or leave it out") from None
        if len(value) > 500:
            raise CentralError(f"{option} is {len(value)} characters; at most 500") from None
        at = next(i for i, c in enumerate(value) if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)
        raise CentralError(
            f"{option} holds a control character (U+{ord(value[at]):04X}, a line break or "
            f"tab?) at character {at + 1}: one line of plain text"
        ) from None


def check_approve(rules: CabinetPolicy, person_id: str, by: str) -> None:
    """`by` stands in for a second badge: held to what that badge would be."""
    access = rules.policy.access
    if not access.remote_second:
        raise CentralError(
            f"{rules.label} has remote_second = false: the cabinet refuses every remote "
            "approval; the second person must badge at the cabinet"
        )
    waiting = rules.person("--person", person_id)
    if not waiting.may_open(rules.device):
        raise CentralError(
            f"--person {person_id!r} cannot be waiting at {rules.device}: they may not open it "
            f"(roles: {', '.join(waiting.roles)}; cabinets: {', '.join(waiting.cabinets)})"
        )
    if by == person_id:
        raise CentralError("--by must be another person than --person (two persons)")
    approver = rules.qualified("--by", by)
    if not pair_allowed(access.pair, waiting, approver):
        need = {
            "two-keepers": "both must be keepers",
            "keeper+any": "one of the two must be a keeper",
        }.get(access.pair, "two different persons")
        raise CentralError(
            f"{person_id!r} and {by!r} are not a pair under pair = {access.pair!r} of "
            f"{rules.label}: {need}"
        )


def check_approval(rules: CabinetPolicy, container: str, persons: tuple[str, ...], by: str) -> None:
    """approve-withdrawal / approve-disposal: the container, the persons of the later
    session (valid, may open this cabinet), and the approver (keeper or safety officer)."""
    rules.container(container)
    if len(set(persons)) != len(persons):
        raise CentralError("--person names someone twice")
    for person_id in persons:
        person = rules.person("--person", person_id)
        if not person.may_open(rules.device):
            raise CentralError(
                f"--person {person_id!r} may not open {rules.device} (roles: "
                f"{', '.join(person.roles)}; cabinets: {', '.join(person.cabinets)})"
            )
    rules.qualified("--by", by)


def check_two_signers(rules: CabinetPolicy | None, persons: tuple[str, ...]) -> None:
    """resolve / stocktake (双人记账): two different persons, keeper or safety officer."""
    if len(persons) != 2 or persons[0] == persons[1]:
        raise CentralError("--person must name two different persons (双人记账)")
    if rules is not None:
        for person_id in persons:
            rules.qualified("--person", person_id)
