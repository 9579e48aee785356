"""`cabinetctl policy check|sign`: a policy a person wrote, checked before a cabinet sees it.

The agent refuses a bad policy too, but at the cabinet, hours later, with a terse
`policy.rejected`; here every mistake is listed at once with its file, line and key.

"Version not increasing" needs a memory of what was signed before. It is kept in a small
JSON file next to the registry (`devices.policy-versions.json` for `devices.toml`): per
cabinet, the last signed version and the SHA-256 of its document. A new policy must be
above the last one signed for its cabinet *and* the last one signed for `"*"` (a
wildcard policy may have been pushed to that cabinet); a `"*"` policy must be above every
cabinet's. Signing the very same document again is allowed (Ed25519 signatures are
deterministic, so it yields the same bytes). `--previous signed.json` compares with that
file instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.wire import SigningKey, VerifyKey, WireError, canonical, open_signed_policy, sign_policy
from central.errors import CentralError
from central.registry import write_atomically
from config.loading import ConfigError, Problem, locate, problems_from, read_toml
from config.policy import Policy

_KNOWN_ROLES = "keeper, user, safety_officer"


# --- the memory of signed versions -------------------------------------------------------


@dataclass(frozen=True)
class SignedVersion:
    version: int
    sha256: str
    signed_at: str


@dataclass
class VersionBook:
    path: Path
    cabinets: dict[str, SignedVersion] = field(default_factory=dict)

    @classmethod
    def beside(cls, registry: Path) -> VersionBook:
        return cls.load(registry.with_name(registry.stem + ".policy-versions.json"))

    @classmethod
    def load(cls, path: Path) -> VersionBook:
        if not path.exists():
            return cls(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            cabinets = {
                str(cab): SignedVersion(int(e["version"]), str(e["sha256"]), str(e["signed_at"]))
                for cab, e in raw["cabinets"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CentralError(f"{path}: unreadable policy version record ({exc})") from None
        return cls(path, cabinets)

    def floor(self, cabinet: str) -> tuple[str, SignedVersion] | None:
        """The signed version a new policy for `cabinet` must exceed, and whose it is."""
        relevant = (
            self.cabinets.items()
            if cabinet == "*"
            else [(c, v) for c, v in self.cabinets.items() if c in (cabinet, "*")]
        )
        return max(relevant, key=lambda item: item[1].version, default=None)

    def record(self, cabinet: str, version: int, digest: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.cabinets[cabinet] = SignedVersion(version, digest, now)
        body = {"cabinets": {c: vars(v) for c, v in sorted(self.cabinets.items())}}
        write_atomically(self.path, json.dumps(body, indent=2, sort_keys=True) + "\n")


def document_digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(document)).hexdigest()


# --- checking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedPolicy:
    policy: Policy
    document: dict[str, Any]
    digest: str


def check_policy(
    path: Path,
    book: VersionBook | None = None,
    previous: Path | None = None,
    central: VerifyKey | None = None,
) -> CheckedPolicy:
    """Validate a policy TOML; raise ConfigError listing every problem with line and key."""
    text, data = read_toml(path)
    problems = cross_check(data, text)
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        found = {p.key for p in problems}
        problems += [p for p in _field_problems(exc, text) if p.key not in found]
    version = data.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        problem = _version_problem(data, version, text, book, previous, central)
        if problem:
            problems.append(problem)
    if problems or policy is None:
        problems.sort(key=lambda p: (p.line or 0, p.key))
        raise ConfigError(str(path), problems)
    document = policy.to_document()
    # What the agent will parse is the JSON, not our TOML: it must mean the same policy.
    if Policy.model_validate(document) != policy:
        raise ConfigError(str(path), [Problem("", "does not survive the JSON round trip")])
    return CheckedPolicy(policy, document, document_digest(document))


def cross_check(data: dict[str, Any], text: str) -> list[Problem]:
    """Every duplicate at once (the model stops at the first one)."""
    problems: list[Problem] = []
    people = _tables(data, "person")
    person_at: dict[str, int] = {}
    card_at: dict[str, int] = {}
    for index, person in people:
        pid = person.get("id")
        if isinstance(pid, str):
            if pid in person_at:
                problems.append(
                    _at(
                        text,
                        ("person", index, "id"),
                        f"duplicate person id {pid!r} (also person[{person_at[pid]}])",
                    )
                )
            else:
                person_at[pid] = index
        cards = person.get("cards")
        for card in cards if isinstance(cards, list) else []:
            if not isinstance(card, str):
                continue
            owner = card_at.get(card)
            if owner is not None and owner != index:
                other = dict(people).get(owner, {}).get("id")
                # Never the full UID in a message (it opens the cabinet if cloned).
                problems.append(
                    _at(
                        text,
                        ("person", index, "cards"),
                        f"card ...{card[-4:]} is also on person {other!r} (person[{owner}])",
                    )
                )
            else:
                card_at.setdefault(card, index)
    box_at: dict[str, tuple[int, object]] = {}
    slot_at: dict[object, tuple[int, object]] = {}
    for index, box in _tables(data, "container"):
        cid, slot = box.get("id"), box.get("slot")
        if isinstance(cid, str):
            if cid in box_at:
                first, first_slot = box_at[cid]
                problems.append(
                    _at(
                        text,
                        ("container", index, "id"),
                        f"container {cid!r} is already in slot {first_slot} (container[{first}]): "
                        "a container has one slot",
                    )
                )
            else:
                box_at[cid] = (index, slot)
        if isinstance(slot, int) and not isinstance(slot, bool):
            if slot in slot_at:
                first, holder = slot_at[slot]
                problems.append(
                    _at(
                        text,
                        ("container", index, "slot"),
                        f"slot {slot} already holds {holder!r} (container[{first}])",
                    )
                )
            else:
                slot_at[slot] = (index, cid)
    return problems


def _tables(data: dict[str, Any], name: str) -> list[tuple[int, dict[str, Any]]]:
    value = data.get(name)
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)]


def _at(text: str, loc: tuple[str | int, ...], message: str) -> Problem:
    key = "".join(
        f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(loc)
    )
    return Problem(key, message, _line(text, loc))


def _line(text: str, loc: tuple[str | int, ...]) -> int | None:
    # locate() wants a key last: `person[1].roles[0]` is found at its `roles =` line.
    while loc and isinstance(loc[-1], int):
        loc = loc[:-1]
    return locate(text, loc) if loc else None


_KEY_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _field_problems(exc: ValidationError, text: str) -> list[Problem]:
    out = []
    for problem, error in zip(problems_from(exc, text), exc.errors(), strict=True):
        loc = tuple(
            int(m.group(2)) if m.group(2) else m.group(1) for m in _KEY_PART.finditer(problem.key)
        )
        message = problem.message
        if error["type"] == "literal_error" and "roles" in loc:
            message = f"unknown role {error['input']!r} (known: {_KNOWN_ROLES})"
        out.append(Problem(problem.key, message, problem.line or _line(text, loc)))
    # pydantic adds "should have at least 1 item" to a list whose only item was refused;
    # the item's own error says it better.
    keys = [p.key for p in out]
    return [p for p in out if not any(k != p.key and k.startswith(p.key + "[") for k in keys)]


def _version_problem(
    data: dict[str, Any],
    version: int,
    text: str,
    book: VersionBook | None,
    previous: Path | None,
    central: VerifyKey | None,
) -> Problem | None:
    cabinet = data.get("cabinet") if isinstance(data.get("cabinet"), str) else "*"
    assert isinstance(cabinet, str)
    if previous is not None:
        before, label = read_signed_version(previous, central), f"{previous}"
        if version > before:
            return None
        return _at(text, ("version",), f"version {version} is not above {before} ({label})")
    if book is None:
        return None
    floor = book.floor(cabinet)
    if floor is None or version > floor[1].version:
        return None
    whose, signed = floor
    try:
        same = (
            whose == cabinet
            and version == signed.version
            and document_digest(Policy.model_validate(data).to_document()) == signed.sha256
        )
    except ValidationError:
        same = False
    if same:
        return None
    return _at(
        text,
        ("version",),
        f"version {version} is not above {signed.version}, signed for cabinet {whose!r} "
        f"at {signed.signed_at} (recorded in {book.path})",
    )


def read_signed_version(path: Path, central: VerifyKey | None) -> int:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CentralError(f"{path}: cannot read a signed policy ({exc})") from None
    try:
        # Without the key this is only a guard against mistakes; the agent checks again.
        inner = open_signed_policy(document, central) if central else document["policy"]
        version = inner["version"]
    except (WireError, KeyError, TypeError) as exc:
        raise CentralError(f"{path}: not a signed policy of ours ({exc})") from None
    if not isinstance(version, int):
        raise CentralError(f"{path}: policy version is not an integer")
    return version


# --- signing --------------------------------------------------------------------------------


def sign_checked(checked: CheckedPolicy, key: SigningKey) -> dict[str, Any]:
    signed = sign_policy(checked.document, key)
    # Prove the agent's check passes before anything leaves this machine.
    open_signed_policy(signed, key.public)
    return signed


def render_signed(signed: dict[str, Any]) -> str:
    return json.dumps(signed, sort_keys=True, ensure_ascii=False, indent=2) + "\n"


def load_signed_policy(path: Path, central: VerifyKey) -> tuple[dict[str, Any], Policy]:
    """A signed policy file, verified with the central key and valid as a Policy."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CentralError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise CentralError(f"{path}: not a JSON file ({exc})") from None
    try:
        inner = open_signed_policy(document, central)
    except WireError as exc:
        raise CentralError(f"{path}: not signed by this central key ({exc})") from None
    try:
        policy = Policy.model_validate(inner)
    except ValidationError as exc:
        why = "; ".join(f"{p.key}: {p.message}" for p in problems_from(exc))
        raise CentralError(f"{path}: signed, but not a valid policy: {why}") from None
    return document, policy


def load_policy_quietly(path: Path | None) -> Policy | None:
    """A policy used only for names and CAS numbers in reports (no version checks)."""
    if path is None:
        return None
    text, data = read_toml(path)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), problems_from(exc, text)) from None
