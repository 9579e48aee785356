"""`cabinetctl report daily`: does the book match the cabinet (账物相符), for one local day?

Everything comes from the centre's store: the daily reconciliation projection
(`Store.daily`: per container the opening book, the day's movements, the closing book,
the last weighing and whether they agree), the day's records of the five doubles
(received, disposed, adjusted from the ledger projection; stocktakes from the record),
and the discrepancies (mass alarms) still open, with how long they have been open.
The day is a calendar day in the cabinets' time zone, not UTC.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass
from typing import Any
from zoneinfo import ZoneInfo

from rich.cells import cell_len

from central.stocktakes import stocktakes
from central.store import Store
from central.store_arg import Names
from central.timefmt import grams, local_day_bounds, local_text

DISCREPANCIES = ("mass_unexplained", "mass_mismatch", "unknown_item")
RECORD_KINDS = ("received", "disposed", "adjusted")


@dataclass(frozen=True)
class ContainerLine:
    cabinet: str
    container: str
    name: str
    opening_g: str
    withdrawn_g: str
    returned_g: str
    received_g: str
    disposed_g: str
    adjusted_g: str
    closing_g: str
    measured_g: str
    ok: bool
    weighed: bool  # without a weighing that day the books agree only with themselves


@dataclass(frozen=True)
class RecordLine:
    time: str
    cabinet: str
    record: str  # received | disposed | adjusted | stocktake
    what: str  # the container (or the stocktake's outcome)
    amount_g: str
    persons: str  # both, by name
    approver: str  # who approved it (a disposal's `by`), by name; "" if no approval
    purpose: str  # the approval's purpose (用途), "" if none
    seq: int


@dataclass(frozen=True)
class DiscrepancyLine:
    cabinet: str
    alarm: str
    kind: str
    since: str
    age: str
    acked_by: str


@dataclass(frozen=True)
class DailyReport:
    day: str
    tz: str
    containers: list[ContainerLine]
    records: list[RecordLine]
    discrepancies: list[DiscrepancyLine]

    @property
    def balanced(self) -> bool:
        return not self.discrepancies and all(c.ok for c in self.containers)

    @property
    def unweighed(self) -> int:
        """Containers whose books agree but whose stock nobody weighed that day."""
        return sum(c.ok and not c.weighed for c in self.containers)

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "tz": self.tz,
            "balanced": self.balanced,
            "unweighed": self.unweighed,
            "containers": [asdict(c) for c in self.containers],
            "records": [asdict(r) for r in self.records],
            "open_discrepancies": [asdict(d) for d in self.discrepancies],
        }


def _labelled(container: str, name: str | None) -> str:
    return f"{container} {name}" if name else container


def age_text(ms: int) -> str:
    minutes = max(0, ms) // 60_000
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h{minutes % 60:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24}h"


def daily_report(
    store: Store,
    day: datetime.date,
    tz: ZoneInfo,
    names: Names,
    now_ms: int,
) -> DailyReport:
    start, end = local_day_bounds(day, tz)

    def people(device: str, persons: tuple[str, ...]) -> str:
        return ", ".join(names.person(device, p) or p for p in persons)

    containers = [
        ContainerLine(
            d.device,
            d.container,
            names.container(d.container, d.name) or "",
            grams(d.opening_mg),
            grams(d.withdrawn_mg),
            grams(d.returned_mg),
            grams(d.received_mg),
            grams(d.disposed_mg),
            grams(d.adjusted_mg),
            grams(d.closing_mg),
            grams(d.measured_mg),
            d.ok,
            d.weighed,
        )
        for d in store.daily(day, tz.key)
    ]
    timed: list[tuple[int, RecordLine]] = [
        (
            r.ts_ms,
            RecordLine(
                local_text(r.ts_ms, tz),
                r.device,
                r.kind,
                _labelled(r.container, names.container(r.container, r.name)),
                grams(r.amount_mg),
                people(r.device, r.persons),
                people(r.device, (r.approver,)) if r.approver else "",
                r.purpose or "",
                r.seq,
            ),
        )
        for r in store.ledger(since_ms=start, until_ms=end)
        if r.kind in RECORD_KINDS
    ]
    for s in stocktakes(store, start, end):
        outcome = "all ok" if s.all_ok else "off: " + ", ".join(s.off)
        what = f"{s.slots} slots, {outcome}"
        who = people(s.device, s.persons)
        when = local_text(s.ts_ms, tz)
        line = RecordLine(when, s.device, "stocktake", what, "", who, "", "", s.seq)
        timed.append((s.ts_ms, line))
    records = [line for _, line in sorted(timed, key=lambda t: (t[0], t[1].cabinet, t[1].seq))]
    as_of = min(now_ms, end)
    discrepancies = [
        DiscrepancyLine(
            a.device,
            a.alarm,
            a.kind,
            local_text(a.raised_ms, tz),
            age_text(as_of - a.raised_ms),
            (names.person(a.device, a.acked_by) or a.acked_by) if a.acked_by else "",
        )
        for a in sorted(store.alarms(state="open"), key=lambda a: (a.raised_ms, a.device))
        if a.kind in DISCREPANCIES and a.raised_ms < end
    ]
    return DailyReport(day.isoformat(), tz.key, containers, records, discrepancies)


def render_json(report: DailyReport) -> str:
    return json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    # Widths in terminal cells: a Chinese character takes two, so len() would misalign.
    widths = [max(cell_len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c + " " * (w - cell_len(c)) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]


def render_text(report: DailyReport) -> str:
    """Plain tables for mail and print (the terminal gets the same text)."""
    verdict = "BALANCED" if report.balanced else "ATTENTION NEEDED"
    if report.balanced and report.unweighed:
        verdict = f"BOOKS CONSISTENT, {report.unweighed} NOT WEIGHED THAT DAY"
    out = [f"Daily reconciliation {report.day} ({report.tz}): {verdict}", "", "Books (g):"]
    head = ("cabinet", "container", "name", "opening", "out", "back", "in", "disposed")
    books: list[tuple[str, ...]] = [(*head, "adjusted", "closing", "weighed", "")]
    for c in report.containers:
        moved = (c.withdrawn_g, c.returned_g, c.received_g, c.disposed_g, c.adjusted_g)
        verdict = ("OK" if c.weighed else "NOT WEIGHED") if c.ok else "MISMATCH"
        ends = (c.closing_g, c.measured_g, verdict)
        books.append((c.cabinet, c.container, c.name, c.opening_g, *moved, *ends))
    out += _table(books) if report.containers else ["  none"]
    out += ["", f"Records of the day: {len(report.records)}"]
    records: list[tuple[str, ...]] = [
        ("time", "cabinet", "record", "what", "g", "persons", "approved by", "purpose")
    ]
    for r in report.records:
        records.append(
            (r.time, r.cabinet, r.record, r.what, r.amount_g, r.persons, r.approver, r.purpose)
        )
    out += _table(records) if report.records else []
    out += ["", f"Open discrepancies: {len(report.discrepancies)}"]
    open_ones: list[tuple[str, ...]] = [("cabinet", "alarm", "kind", "since", "open for", "by")]
    for d in report.discrepancies:
        open_ones.append((d.cabinet, d.alarm, d.kind, d.since, d.age, d.acked_by))
    out += _table(open_ones) if report.discrepancies else []
    return "\n".join(out) + "\n"
