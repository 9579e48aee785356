"""`cabinetctl export`: the usage ledger (领用记录) regulators ask for, from verified events.

One row per withdrawal or return: when, which cabinet, both persons, the container and
its CAS number, the exact amount (integer milligrams, and grams as an exact decimal),
the book mass after it, the approval it was made under (who approved it, for what),
how the cabinet was opened (local pair or remote second person) and the alarms raised
during the same session.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from central.registry import Registry
from central.timefmt import grams, utc_text
from config.policy import Policy

USAGE_TYPES = ("inventory.withdrawal", "inventory.return")
CONTEXT_TYPES = ("access.granted", "alarm.raised")
# Sessions are short; the access.granted of a withdrawal made just after `--since` may
# lie just before it, so context is read from this much earlier (and later, for alarms).
CONTEXT_MARGIN_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class UsageRow:
    time_utc: str
    cabinet: str
    site: str
    session: str
    action: str  # withdrawal | return
    person_1: str
    person_1_name: str
    person_2: str
    person_2_name: str
    container: str
    container_name: str
    cas: str
    slot: int | None
    amount_mg: int | None
    amount_g: str
    book_mg: int | None
    book_g: str
    approval: str  # the approving command's nonce, or "none"
    approval_max_mg: int | None
    approver: str  # who approved it (policy person id), or ""
    purpose: str  # what it was for (用途), from the approval, or ""
    access_mode: str  # local | remote | unknown
    alarms: str  # "kind:alarm-id; ..." raised during the same session
    seq: int


COLUMNS = [name for name in UsageRow.__dataclass_fields__]


def usage_rows(
    usage: Iterable[Mapping[str, Any]],
    context: Iterable[Mapping[str, Any]],
    registry: Registry,
    policy: Policy | None = None,
) -> list[UsageRow]:
    """Join verified withdrawals/returns with their session's access and alarms."""
    modes: dict[tuple[str, str], str] = {}
    alarms: dict[tuple[str, str], list[str]] = {}
    for env in context:
        data, device = env["data"], str(env["device"])
        session = data.get("session")
        if not isinstance(session, str):
            continue
        if env["type"] == "access.granted":
            modes[(device, session)] = str(data.get("mode", "unknown"))
        elif env["type"] == "alarm.raised":
            label = f"{data.get('kind', '?')}:{data.get('alarm', '?')}"
            alarms.setdefault((device, session), []).append(label)
    rows = []
    for env in usage:
        rows.append(_row(env, registry, policy, modes, alarms))
    return rows


def _row(
    env: Mapping[str, Any],
    registry: Registry,
    policy: Policy | None,
    modes: Mapping[tuple[str, str], str],
    alarms: Mapping[tuple[str, str], list[str]],
) -> UsageRow:
    data, device = env["data"], str(env["device"])
    session = str(data.get("session") or "")
    persons = [str(p) for p in data.get("persons") or []]
    first, second = [*persons, "", ""][:2]
    container = str(data.get("container") or "")
    box = policy.container_by_id(container) if policy else None
    approval = data.get("approval")
    approval_nonce, approval_max, approver = "none", None, ""
    if isinstance(approval, dict):
        approval_nonce = str(approval.get("nonce", "?"))
        raw_max = approval.get("max_mg")
        approval_max = raw_max if isinstance(raw_max, int) else None
        approver = str(approval.get("by") or "")
    amount = data.get("amount_mg")
    book = data.get("book_mg")
    slot = data.get("slot")
    known = registry.devices.get(device)
    return UsageRow(
        time_utc=utc_text(int(env["ts"])),
        cabinet=device,
        site=known.site if known else "",
        session=session,
        action=str(env["type"]).removeprefix("inventory."),
        person_1=first,
        person_1_name=_name(policy, first),
        person_2=second,
        person_2_name=_name(policy, second),
        container=container,
        container_name=box.name if box else "",
        cas=str(data.get("cas") or (box.cas if box else "")),
        slot=slot if isinstance(slot, int) else None,
        amount_mg=amount if isinstance(amount, int) else None,
        amount_g=grams(amount if isinstance(amount, int) else None),
        book_mg=book if isinstance(book, int) else None,
        book_g=grams(book if isinstance(book, int) else None),
        approval=approval_nonce,
        approval_max_mg=approval_max,
        approver=approver,
        purpose=str(data.get("purpose") or ""),
        access_mode=modes.get((device, session), "unknown"),
        alarms="; ".join(alarms.get((device, session), [])),
        seq=int(env["seq"]),
    )


def _name(policy: Policy | None, person_id: str) -> str:
    if policy is None or not person_id:
        return ""
    person = policy.person_by_id(person_id)
    return person.name if person else ""


def render_csv(rows: Iterable[UsageRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
    return out.getvalue()


def render_json(rows: Iterable[UsageRow]) -> str:
    return json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=2) + "\n"
