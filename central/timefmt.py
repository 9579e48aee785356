"""Times as people type them (`2026-03-01`, `2026-03-01T08:00:00Z`) and as regulators read them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from central.errors import CentralError


def parse_instant(text: str, what: str) -> int:
    """UTC milliseconds of an RFC 3339 time, or of midnight UTC of a bare date."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CentralError(
            f"{what} {text!r}: expected a date (2026-03-01) or a time with a zone "
            "(2026-03-01T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise CentralError(f"{what} {text!r}: give a time zone (Z or +08:00)")
    return int(moment.timestamp() * 1000)


def day_bounds(text: str | None, now_ms: int) -> tuple[str, int, int]:
    """The UTC day `text` (default: today): its name and [start, end) in milliseconds."""
    if text is None:
        day = datetime.fromtimestamp(now_ms / 1000, UTC).date()
    else:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise CentralError(f"--date {text!r}: expected YYYY-MM-DD") from None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    return day.isoformat(), int(start.timestamp() * 1000), int(end.timestamp() * 1000)


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
