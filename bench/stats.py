"""Small statistics and the human table printed after the JSON lines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was really observed."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# What each benchmark's row shows, and the goal from the issue, in one place.
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "pipeline": (("ratio", "≥ 0.5"), ("events_per_s", ""), ("raw_per_s", "")),
    "alarm_latency": (
        ("floor_ratio", "≤ 1.5"),
        ("ratio", ""),
        ("p50_ms", ""),
        ("p99_ms", ""),
        ("raw_p99_ms", ""),
        ("fsync_p99_ms", ""),
        ("floor_p99_ms", ""),
    ),
    "decision": (("floor_ratio", "≤ 2"), ("p99_ms", ""), ("p50_ms", ""), ("fsync_p99_ms", "")),
    "drain": (("ratio", "≥ 0.5"), ("live_alarm_max_ms", "< 1000"), ("drain_per_s", "")),
    "central_ingest_sqlite": (
        ("ratio", "≥ 0.5"),
        ("alarm_p99_ms", "< 1000"),
        ("events_per_s", ""),
        ("raw_per_s", ""),
    ),
    "central_ingest_postgres": (
        ("ratio", "≥ 0.5"),
        ("alarm_p99_ms", "< 1000"),
        ("events_per_s", ""),
        ("raw_per_s", ""),
    ),
    "footprint": (
        ("fsync_per_event", "≤ 0.05"),
        ("rss_mb", "≤ 45"),
        ("rss_growth_mb", ""),
        ("idle_cpu_pct", "≤ 0.5"),
        ("ready_s", "≤ 0.5"),
    ),
}


def table(results: Sequence[dict[str, Any]]) -> str:
    rows = [("benchmark", "figure", "value", "goal")]
    for result in results:
        name = str(result["name"])
        if "error" in result:
            rows.append((name, "error", str(result["error"])[:60], ""))
            continue
        for key, goal in COLUMNS.get(name, ()):
            rows.append((name, key, _fmt(result.get(key)), goal))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "-" if value is None else str(value)
