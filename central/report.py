"""`cabinetctl export`: the usage ledger (领用记录) regulators ask for, from the centre's store.

The rows are the store's ledger projection (`Store.ledger`: every withdrawal, return,
receipt, disposal and correction of the books, verified and in order); this module only
lays them out for people: local time with its offset, both persons and the approver by
name, grams as exact decimals (never a float), the purpose and the approval each
withdrawal was made under. The CSV starts with a UTF-8 byte order mark so that a
spreadsheet opens the Chinese names as text rather than mojibake.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from zoneinfo import ZoneInfo

from central.registry import Registry
from central.store import LedgerRow, Store
from central.store_arg import Names
from central.timefmt import grams, local_text

BOM = "\ufeff"
MAX_SESSIONS = 10_000  # per cabinet: the store's own limit of one read


@dataclass(frozen=True)
class UsageRow:
    time: str  # local, with its UTC offset
    cabinet: str
    site: str
    session: str
    action: str  # withdrawal | return | received | disposed | adjusted
    person_1: str
    person_1_name: str
    person_2: str
    person_2_name: str
    container: str
    container_name: str
    cas: str
    amount_g: str  # exact grams; signed for an adjustment
    book_g: str  # the book after this row
    purpose: str  # 用途, from the approval the withdrawal used
    approver: str  # who approved it (`by` of the approval)
    approver_name: str
    approval: str  # the approving command's nonce, or "none"
    access_mode: str  # local | remote (a second person approved from the centre) | ""
    alarms: str  # "kind:alarm-id; ..." raised during the same session
    seq: int


COLUMNS = list(UsageRow.__dataclass_fields__)


@dataclass(frozen=True)
class SessionContext:
    """What the store knows of each session: how it was opened, which alarms it raised."""

    modes: Mapping[tuple[str, str], str]
    alarms: Mapping[tuple[str, str], list[str]]


def session_context(store: Store, devices: Iterable[str]) -> SessionContext:
    modes = {
        (device, s.session): s.mode
        for device in devices
        for s in store.sessions(device, limit=MAX_SESSIONS)
    }
    alarms: dict[tuple[str, str], list[str]] = {}
    for a in sorted(store.alarms(state="all"), key=lambda a: (a.raised_ms, a.alarm)):
        session = a.details.get("session")
        if isinstance(session, str):
            alarms.setdefault((a.device, session), []).append(f"{a.kind}:{a.alarm}")
    return SessionContext(modes, alarms)


def usage_rows(
    ledger: Iterable[LedgerRow],
    registry: Registry,
    names: Names,
    tz: ZoneInfo,
    context: SessionContext,
) -> list[UsageRow]:
    rows = []
    for r in ledger:
        session = (r.device, r.session or "")
        first, second = [*r.persons, "", ""][:2]
        known = registry.devices.get(r.device)
        rows.append(
            UsageRow(
                time=local_text(r.ts_ms, tz),
                cabinet=r.device,
                site=known.site if known else "",
                session=r.session or "",
                action=r.kind,
                person_1=first,
                person_1_name=_name(names, r.device, first),
                person_2=second,
                person_2_name=_name(names, r.device, second),
                container=r.container,
                container_name=names.container(r.container, r.name) or "",
                cas=r.cas or "",
                amount_g=grams(r.amount_mg),
                book_g=grams(r.book_mg),
                purpose=r.purpose or "",
                approver=r.approver or "",
                approver_name=_name(names, r.device, r.approver or ""),
                approval=r.approval or "none",
                access_mode=context.modes.get(session, ""),
                alarms="; ".join(context.alarms.get(session, [])),
                seq=r.seq,
            )
        )
    return rows


def _name(names: Names, device: str, person: str) -> str:
    return (names.person(device, person) or "") if person else ""


def render_csv(rows: Iterable[UsageRow]) -> str:
    out = io.StringIO()
    out.write(BOM)
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return out.getvalue()


def render_json(rows: Iterable[UsageRow]) -> str:
    return json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=2) + "\n"
