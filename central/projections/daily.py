"""The daily reconciliation (账物相符): per container, do the day's movements explain the
closing book, and does the last weighing of the day agree with the book?

Pure computation over ledger rows and weighings (no I/O): the store selects the rows of
everything up to the end of the local day and hands them here.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from central.store.records import DailyRow, LedgerRow
from central.timefmt import local_day_bounds

DEFAULT_TOLERANCE_MG = 2000  # the policy defaults (§4.4): the larger of 2 g and 1 %
DEFAULT_TOLERANCE_PCT = 1


@dataclass(frozen=True)
class Weighing:
    device: str
    container: str
    ts_ms: int
    seq: int
    measured_mg: int
    book_mg: int | None  # what the books said at that moment


def day_bounds(day: datetime.date, tz: str) -> tuple[int, int]:
    """[start, end) of a local calendar day in UTC milliseconds (23 or 25 h across DST)."""
    return local_day_bounds(day, ZoneInfo(tz))


def within(measured: int, book: int, tolerance_mg: int, tolerance_pct: int) -> bool:
    allowed = max(tolerance_mg, abs(book) * tolerance_pct // 100)
    return abs(measured - book) <= allowed


def _book_before(row: LedgerRow) -> int | None:
    """The book just before a row, from the book after it and its amount."""
    if row.book_mg is None:
        return None
    change = {
        "withdrawal": -row.amount_mg,
        "return": row.amount_mg,
        "received": None,  # a new container: nothing was on the books before
        "disposed": -row.amount_mg,
        "adjusted": row.amount_mg,
    }.get(row.kind)
    return 0 if change is None else row.book_mg - change


def reconcile(
    day: datetime.date,
    start_ms: int,
    end_ms: int,
    rows: Iterable[LedgerRow],
    weighings: Iterable[Weighing],
    names: dict[tuple[str, str], str | None],
    *,
    tolerance_mg: int = DEFAULT_TOLERANCE_MG,
    tolerance_pct: int = DEFAULT_TOLERANCE_PCT,
) -> list[DailyRow]:
    by_container: dict[tuple[str, str], list[LedgerRow]] = {}
    for row in sorted(rows, key=lambda r: (r.device, r.seq)):
        if row.ts_ms < end_ms:
            by_container.setdefault((row.device, row.container), []).append(row)
    # Only a weighing of that day says anything about that day's stock; an older one
    # still names the container (it is in the cabinet) but is not shown as measured.
    last_weighing: dict[tuple[str, str], Weighing] = {}
    for w in sorted(weighings, key=lambda w: (w.device, w.seq)):
        if w.ts_ms < end_ms:
            last_weighing[(w.device, w.container)] = w
    out = []
    for key in sorted(set(by_container) | set(last_weighing)):
        history = by_container.get(key, [])
        before = [r for r in history if r.ts_ms < start_ms]
        today = [r for r in history if r.ts_ms >= start_ms]
        sums = {kind: 0 for kind in ("withdrawal", "return", "received", "disposed", "adjusted")}
        for r in today:
            sums[r.kind] = sums.get(r.kind, 0) + r.amount_mg
        last = last_weighing.get(key)
        weighing = last if last is not None and last.ts_ms >= start_ms else None
        if not today and weighing is None and before and before[-1].kind == "disposed":
            continue  # it left for good on an earlier day: nothing of it is here to weigh
        if before:
            opening = before[-1].book_mg
        elif today:
            opening = _book_before(today[0])
        else:
            opening = last.book_mg if last else None
        closing = history[-1].book_mg if history else opening
        explained = True
        if opening is not None and closing is not None:
            expected = (
                opening
                - sums["withdrawal"]
                + sums["return"]
                + sums["received"]
                - sums["disposed"]
                + sums["adjusted"]
            )
            explained = expected == closing
        agrees = True
        if weighing is not None and weighing.book_mg is not None:
            agrees = within(weighing.measured_mg, weighing.book_mg, tolerance_mg, tolerance_pct)
        # Disposed that day: nothing of it is left to weigh, and its last weighing (the
        # delivery, a stocktake) shows the stock before it left, not the closing book.
        # The disposal itself is the two-person record of what left, so it is not
        # "not weighed"; the weighing before it still had to agree with its own book.
        gone = bool(today) and today[-1].kind == "disposed"
        out.append(
            DailyRow(
                day=day,
                device=key[0],
                container=key[1],
                name=names.get(key),
                opening_mg=opening,
                withdrawn_mg=sums["withdrawal"],
                returned_mg=sums["return"],
                received_mg=sums["received"],
                disposed_mg=sums["disposed"],
                adjusted_mg=sums["adjusted"],
                closing_mg=closing,
                measured_mg=weighing.measured_mg if weighing and not gone else None,
                ok=explained and agrees,
                weighed=weighing is not None or gone,
            )
        )
    return out
