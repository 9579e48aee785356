"""`cabinetctl report daily`: does the book match the cabinet (账物相符), per container?

Built from verified events up to the end of the chosen UTC day:
- the book mass of each container: the `book_mg` of its latest withdrawal, return or
  snapshot;
- the last `inventory.snapshot`: what the scale measured (`mass_mg`) against what the
  book said at that same moment (`book_mg`); their difference, judged with the policy's
  tolerance (the larger of `tolerance_mg` and `tolerance_pct` of the book);
- containers out of their slot (`inventory.removed` without `inventory.restored`), overdue
  past `return_within_s` or with an open `overdue_return` alarm;
- alarms still open at the end of the day, acknowledged or not, with their age (an open
  discrepancy of the books waits for two persons to resolve it);
- the day's movements: grams taken and returned;
- the day's two-person records of the books (双人记账): containers received, disposed,
  books adjusted by a resolve, and stocktakes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from central.timefmt import grams, utc_text
from config.policy import InventoryPolicy, Policy

REPORT_TYPES = (
    "inventory.withdrawal",
    "inventory.return",
    "inventory.snapshot",
    "inventory.removed",
    "inventory.restored",
    "alarm.raised",
    "alarm.cleared",
    "alarm.acknowledged",
    "command.applied",
    "inventory.received",
    "inventory.disposed",
    "inventory.adjusted",
    "inventory.stocktake",
)
RECORD_TYPES = REPORT_TYPES[-4:]


@dataclass
class ContainerLine:
    cabinet: str
    container: str
    slot: int | None = None
    book_mg: int | None = None
    snapshot_utc: str = ""
    snapshot_mass_mg: int | None = None
    snapshot_book_mg: int | None = None
    difference_mg: int | None = None
    tolerance_mg: int | None = None
    moved_since_snapshot: bool = False
    out_since_utc: str = ""
    taken_today_mg: int = 0
    returned_today_mg: int = 0
    status: str = ""  # OK | MISMATCH | NO SNAPSHOT | OUT | OVERDUE

    _snapshot_ts: int | None = field(default=None, repr=False)
    _moved_ts: int | None = field(default=None, repr=False)
    _out_ts: int | None = field(default=None, repr=False)


@dataclass
class OpenAlarmLine:
    cabinet: str
    alarm: str
    kind: str
    since_utc: str
    acked: bool
    container: str = ""
    age_h: int = 0  # hours open at the end of the day
    _since_ts: int = field(default=0, repr=False)


@dataclass
class DayRecord:
    """One two-person record of the books made that day."""

    time_utc: str
    cabinet: str
    record: str  # received | disposed | adjusted | stocktake
    persons: str
    detail: str


@dataclass
class DailyReport:
    day: str
    containers: list[ContainerLine]
    alarms: list[OpenAlarmLine]
    records: list[DayRecord] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.alarms and all(c.status == "OK" for c in self.containers)

    def to_json(self) -> dict[str, Any]:
        def public(line: ContainerLine) -> dict[str, Any]:
            return {k: v for k, v in asdict(line).items() if not k.startswith("_")}

        return {
            "day": self.day,
            "balanced": self.balanced,
            "containers": [public(c) for c in self.containers],
            "open_alarms": [
                {k: v for k, v in asdict(a).items() if not k.startswith("_")} for a in self.alarms
            ],
            "records": [asdict(r) for r in self.records],
        }


def daily_report(
    events: Iterable[Mapping[str, Any]],
    day: str,
    day_start_ms: int,
    day_end_ms: int,
    policy: Policy | None = None,
) -> DailyReport:
    """`events`: verified envelopes with ts < day_end_ms, in time order."""
    inventory = policy.inventory if policy else InventoryPolicy()
    lines: dict[tuple[str, str], ContainerLine] = {}
    alarms: dict[tuple[str, str], OpenAlarmLine] = {}
    records: list[DayRecord] = []

    def line(device: str, container: object, slot: object = None) -> ContainerLine | None:
        if not isinstance(container, str) or not container:
            return None
        item = lines.setdefault((device, container), ContainerLine(device, container))
        if isinstance(slot, int):
            item.slot = slot
        return item

    for env in events:
        device, ts, data, kind = str(env["device"]), int(env["ts"]), env["data"], env["type"]
        today = day_start_ms <= ts < day_end_ms
        if kind in ("inventory.withdrawal", "inventory.return"):
            item = line(device, data.get("container"), data.get("slot"))
            if item is None:
                continue
            if isinstance(data.get("book_mg"), int):
                item.book_mg = data["book_mg"]
            item._moved_ts = ts
            amount = data.get("amount_mg") if isinstance(data.get("amount_mg"), int) else 0
            if today and kind == "inventory.withdrawal":
                item.taken_today_mg += amount
            elif today:
                item.returned_today_mg += amount
        elif kind == "inventory.snapshot":
            for slot in data.get("slots") or []:
                if not isinstance(slot, dict):
                    continue
                item = line(device, slot.get("container"), slot.get("slot"))
                if item is None:
                    continue
                mass, book = slot.get("mass_mg"), slot.get("book_mg")
                item._snapshot_ts = ts
                item.snapshot_mass_mg = mass if isinstance(mass, int) else None
                item.snapshot_book_mg = book if isinstance(book, int) else None
                if isinstance(book, int):
                    item.book_mg = book
        elif kind == "inventory.removed":
            item = line(device, data.get("container"), data.get("slot"))
            if item is not None:
                item._out_ts = ts
        elif kind == "inventory.restored":
            item = line(device, data.get("container"), data.get("slot"))
            if item is not None:
                item._out_ts = None
        elif kind in RECORD_TYPES:
            _books_record(lines, line, device, kind, data)
            if today:
                records.append(_day_record(device, ts, kind, data))
        elif kind == "alarm.raised" and isinstance(data.get("alarm"), str):
            alarms[(device, data["alarm"])] = OpenAlarmLine(
                device,
                data["alarm"],
                str(data.get("kind", "?")),
                utc_text(ts),
                False,
                str(data.get("container") or ""),
                _since_ts=ts,
            )
        elif kind == "alarm.cleared" and isinstance(data.get("alarm"), str):
            alarms.pop((device, data["alarm"]), None)
        elif kind == "alarm.acknowledged" or (
            kind == "command.applied" and data.get("name") == "ack"
        ):
            open_alarm = alarms.get((device, str(data.get("alarm"))))
            if open_alarm is not None:
                open_alarm.acked = True
    overdue_alarm = {
        (a.cabinet, a.container) for a in alarms.values() if a.kind == "overdue_return"
    }
    for (device, container), item in lines.items():
        _judge(item, inventory, day_end_ms, (device, container) in overdue_alarm)
    ordered = sorted(lines.values(), key=lambda c: (c.cabinet, c.slot or 0, c.container))
    open_alarms = sorted(alarms.values(), key=lambda a: (a.cabinet, a.since_utc))
    for alarm in open_alarms:
        alarm.age_h = max(0, day_end_ms - alarm._since_ts) // 3_600_000
    return DailyReport(day, ordered, open_alarms, records)


def _books_record(
    lines: dict[tuple[str, str], ContainerLine],
    line: Any,
    device: str,
    kind: str,
    data: Mapping[str, Any],
) -> None:
    """What a received, disposed or adjusted container does to its book line."""
    if kind == "inventory.disposed":
        lines.pop((device, str(data.get("container"))), None)  # gone for good
        return
    book = data.get("book_after_mg" if kind == "inventory.adjusted" else "book_mg")
    item = line(device, data.get("container"), data.get("slot"))
    if item is not None and isinstance(book, int):
        item.book_mg = book


def _day_record(device: str, ts: int, kind: str, data: Mapping[str, Any]) -> DayRecord:
    persons = ", ".join(str(p) for p in data.get("persons") or [])
    name = kind.removeprefix("inventory.")
    if kind == "inventory.stocktake":
        detail = "all ok" if data.get("all_ok") else "NOT ALL OK"
    elif kind == "inventory.adjusted":
        detail = f"{data.get('container')} {grams(data.get('delta_mg'))} g ({data.get('reason')})"
    elif kind == "inventory.received":
        note, count = data.get("expected_mg"), data.get("measured_mg")
        detail = f"{data.get('container')} {grams(count)} g (note {grams(note)} g)"
    else:
        detail = f"{data.get('container')} {grams(data.get('book_mg'))} g ({data.get('purpose')})"
    return DayRecord(utc_text(ts), device, name, persons, detail)


def _judge(item: ContainerLine, inventory: InventoryPolicy, end_ms: int, alarmed: bool) -> None:
    if item._snapshot_ts is not None:
        item.snapshot_utc = utc_text(item._snapshot_ts)
        item.moved_since_snapshot = (item._moved_ts or 0) > item._snapshot_ts
    if item.snapshot_mass_mg is not None and item.snapshot_book_mg is not None:
        item.difference_mg = item.snapshot_mass_mg - item.snapshot_book_mg
        item.tolerance_mg = max(
            inventory.tolerance_mg, item.snapshot_book_mg * inventory.tolerance_pct // 100
        )
    if item._out_ts is not None:
        item.out_since_utc = utc_text(item._out_ts)
        late = end_ms - item._out_ts > inventory.return_within_s * 1000
        item.status = "OVERDUE" if late or alarmed else "OUT"
    elif item.difference_mg is None:
        item.status = "NO SNAPSHOT"
    elif item.tolerance_mg is not None and abs(item.difference_mg) > item.tolerance_mg:
        item.status = "MISMATCH"
    else:
        item.status = "OK"


def render_json(report: DailyReport) -> str:
    return json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n"


def render_text(report: DailyReport) -> str:
    """A plain table for mail and print (the terminal gets the same text)."""
    out = [
        f"Daily reconciliation {report.day} (UTC): "
        + ("BALANCED" if report.balanced else "ATTENTION NEEDED")
    ]
    header = ("cabinet", "slot", "container", "book g", "scale g", "diff g", "status", "today")
    rows = [header]
    for c in report.containers:
        today = f"-{grams(c.taken_today_mg)} +{grams(c.returned_today_mg)}"
        status = c.status + (" (moved since)" if c.moved_since_snapshot else "")
        if c.out_since_utc:
            status += f" since {c.out_since_utc}"
        rows.append(
            (
                c.cabinet,
                "" if c.slot is None else str(c.slot),
                c.container,
                grams(c.book_mg),
                grams(c.snapshot_mass_mg),
                grams(c.difference_mg),
                status,
                today,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        out.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    out.append(f"Open alarms: {len(report.alarms)}")
    for a in report.alarms:
        acked = "acked" if a.acked else "NOT ACKED"
        age = f"open {a.age_h} h"
        out.append(f"  {a.cabinet}  {a.kind}  {a.alarm}  since {a.since_utc}  {age}  {acked}")
    out.append(f"Two-person records of the books today: {len(report.records)}")
    for rec in report.records:
        out.append(f"  {rec.time_utc}  {rec.cabinet}  {rec.record}  {rec.persons}  {rec.detail}")
    return "\n".join(out) + "\n"
