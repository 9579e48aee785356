"""Times as people type them (`2026-03-01`, `2026-03-01T08:00:00Z`) and as regulators read them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from central.errors import CentralError


def _moment(text: str, what: str, day_zone: tzinfo, time_hint: str) -> datetime:
    """A bare date is midnight in `day_zone`; a time keeps whatever zone it names (or none)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=day_zone)
        return datetime.fromisoformat(text)
    except ValueError:
        expected = f"expected a date (2026-03-01) or {time_hint}"
        raise CentralError(f"{what} {text!r}: {expected}") from None


def parse_instant(text: str, what: str) -> int:
    """UTC milliseconds of an RFC 3339 time, or of midnight UTC of a bare date."""
    moment = _moment(text, what, UTC, "a time with a zone (2026-03-01T08:00:00Z)")
    if moment.tzinfo is None:
        raise CentralError(f"{what} {text!r}: give a time zone (Z or +08:00)")
    return int(moment.timestamp() * 1000)


def parse_local_instant(text: str, what: str, tz: ZoneInfo) -> int:
    """Like `parse_instant`, but a bare date or a time without a zone is local to `tz`."""
    hint = "a time (2026-03-01T08:00, local unless it names a zone: Z or +08:00)"
    moment = _moment(text, what, tz, hint)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return int(moment.timestamp() * 1000)


DEFAULT_TZ = "Asia/Shanghai"  # the cabinets' users read local time, not UTC


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `--tz` names, or a clear refusal."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CentralError(
            f"--tz {name!r}: not a known time zone (e.g. Asia/Shanghai, Europe/Berlin, UTC)"
        ) from None


def local_text(ms: int, tz: ZoneInfo) -> str:
    """`2026-03-01 16:00:00+08:00`: local time, with its offset so it is never ambiguous."""
    moment = datetime.fromtimestamp(ms / 1000, tz)
    return moment.isoformat(sep=" ", timespec="seconds")


def local_clock(ms: int, tz: ZoneInfo) -> str:
    """`16:00:00`: the local time of day, for a live screen."""
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%H:%M:%S")


def local_day(text: str | None, now_ms: int, tz: ZoneInfo) -> date:
    """The local calendar day `text` names (default: today where the cabinets are)."""
    if text is None:
        return datetime.fromtimestamp(now_ms / 1000, tz).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CentralError(f"--date {text!r}: expected YYYY-MM-DD") from None


def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) of a local calendar day in UTC milliseconds (23 or 25 h across DST)."""
    start = datetime.combine(day, time(), tz)
    end = datetime.combine(day + timedelta(days=1), time(), tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def utc_text(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def grams(mg: int | None) -> str:
    """Exact decimal grams from integer milligrams (no float rounding in a legal record)."""
    if mg is None:
        return ""
    sign = "-" if mg < 0 else ""
    return f"{sign}{abs(mg) // 1000}.{abs(mg) % 1000:03d}"


def duration_s(text: str, what: str) -> int:
    """`90`, `90s`, `15m`, `2h`, `1d` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    body, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    if not body.isdigit() or int(body) <= 0:
        raise CentralError(f"{what} {text!r}: expected a positive duration like 300, 15m, 2h")
    return int(body) * units[unit]


def grams_to_mg(text: str, what: str) -> int:
    """`25`, `25.5`, `0.125` grams -> exact milligrams; finer than 1 mg is refused."""
    whole, _, frac = text.strip().partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > 3:
        raise CentralError(f"{what} {text!r}: expected grams with at most 3 decimals, e.g. 25.5")
    mg = int(whole) * 1000 + int((frac or "0").ljust(3, "0"))
    if mg <= 0:
        raise CentralError(f"{what} must be more than 0 g")
    return mg
