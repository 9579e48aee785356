"""Times and days as people give them in a filter: a local day, or an instant with a zone."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

from central.errors import CentralError
from central.timefmt import parse_instant


class BadTime(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_day(text: str, what: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise BadTime(f"{what} {text!r}: expected a day like 2026-03-01") from None


def parse_bound(text: str | None, what: str, zone: ZoneInfo, end: bool) -> int | None:
    """UTC milliseconds of `text`: a bare day is a local day (its start, or its end for `until`).

    Unlike cabinetctl's UTC days, the console's days are the days people live in.
    """
    if text is None or text == "":
        return None
    if len(text) == 10:
        day = parse_day(text, what)
        if end:
            day += datetime.timedelta(days=1)
        return int(datetime.datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)
    try:
        return parse_instant(text, what)  # an instant with its zone, as cabinetctl reads one
    except CentralError as error:
        raise BadTime(error.message) from None


def ledger_filter(
    since: str | None, until: str | None, zone: ZoneInfo
) -> tuple[int | None, int | None]:
    """The [since, until) of a ledger query; a reversed range is a mistake worth saying."""
    since_ms = parse_bound(since, "since", zone, end=False)
    until_ms = parse_bound(until, "until", zone, end=True)
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise BadTime(f"until {until!r} is before (or at) since {since!r}")
    return since_ms, until_ms
