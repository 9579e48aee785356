"""How the record reads to a person: local time, grams, people by name, rows as JSON.

Masses are integer milligrams in the record; people read grams, printed from the
integers (no float rounding can show a gram that is not in the record).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from central.web.ports import ConsoleStore


def _grams(mg: int, thousands: str) -> str:
    whole, frac = divmod(abs(mg), 1000)
    return f"{'-' if mg < 0 else ''}{whole:{thousands}}.{frac:03d}"


def grams(mg: int | None) -> str:
    return "—" if mg is None else _grams(mg, ",") + " g"


def grams_plain(mg: int | None) -> str:
    """Grams for a spreadsheet cell: no thousands separator, no unit."""
    return "" if mg is None else _grams(mg, "")


def local_time(ms: int | None, zone: ZoneInfo, seconds: bool = True) -> str:
    # 0 is "never" (a cabinet not seen yet), not midnight of 1 January 1970
    if not ms:
        return "—"
    try:
        moment = datetime.datetime.fromtimestamp(ms / 1000, zone)
    except (ValueError, OverflowError, OSError):
        return f"? ({ms} ms)"  # a verified record can still hold a time no calendar has
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def local_today(zone: ZoneInfo, now_ms: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(now_ms / 1000, zone).date()


def row(obj: Any, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """A store row as a JSON object; `fields` picks (and orders) what a contract names."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data = dataclasses.asdict(obj)
    else:
        data = dict(vars(obj))
    if fields is None:
        return data
    return {name: data.get(name) for name in fields}


class Names:
    """People by name, as the policy in force for each cabinet calls them (cached per page)."""

    def __init__(self, store: ConsoleStore) -> None:
        self._store = store
        self._known: dict[tuple[str, str], str] = {}

    def __call__(self, device: str, person: str | None) -> str:
        if not person:
            return "—"
        key = (device, person)
        if key not in self._known:
            self._known[key] = self._store.person_name(device, person) or person
        return self._known[key]

    def many(self, device: str, persons: Iterable[str] | None) -> str:
        return " + ".join(self(device, p) for p in persons or ())
