"""The live screen of `cabinetctl watch` (rich): alarms on top, problems, then the event log.

Pure rendering of a WatchState: no MQTT, no clock reads (the caller passes `now_ms`),
so a test can render it into a recording Console and read the text. Shown for the people
on duty: times in the cabinets' time zone, masses in grams, people by name (with their
id), and one screen row per log line (a wrapped line would push the newest events off
the bottom of the screen).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from central.store_arg import Names
from central.timefmt import grams, local_clock, local_text
from central.watch import Seen, WatchState

PERSON_KEYS = ("person", "by", "acked_by")  # data fields naming one person
PERSON_LISTS = ("persons", "persons_out")  # ... and a list of them


@dataclass(frozen=True)
class Display:
    """How a person on duty reads the screen: their time zone, and names for ids."""

    tz: ZoneInfo
    names: Names

    def when(self, ms: int) -> str:
        return local_text(ms, self.tz)

    def clock(self, ms: int) -> str:
        return local_clock(ms, self.tz)

    def person(self, device: str | None, person: str) -> str:
        name = self.names.person(device or "", person)
        return f"{name} ({person})" if name else person


def _age(now_ms: int, since_ms: int) -> str:
    seconds = max(0, (now_ms - since_ms) // 1000)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def header(
    state: WatchState, display: Display, now_ms: int, broker: str, connected: bool
) -> RenderableType:
    link = Text("connected", style="green") if connected else Text("DISCONNECTED", "bold red")
    counts = state.counts
    top = Text.assemble(
        ("cabinetctl watch  ", "bold"),
        f"{display.when(now_ms)}  ",
        (f"{broker} ", "dim"),
        link,
    )
    tally = Text.assemble(
        f"verified {counts['verified']}   ",
        (f"problems {counts['problems']}", "bold red" if counts["problems"] else ""),
        f"   resends asked {counts['resends']}",
    )
    cabinets = Text()
    for device_id in sorted(set(state.registry.devices) | set(state.status)):
        status = state.status.get(device_id)
        if status is None:
            cabinets.append(f"{device_id} ?  ", "dim")
            continue
        style = {"online": "green", "offline": "bold red"}.get(status.state, "yellow")
        cabinets.append(f"{device_id} {status.state}", style)
        if status.problem:
            cabinets.append(" (!)", "bold red")
        cabinets.append("  ")
    return Group(top, tally, cabinets)


def alarm_table(state: WatchState, display: Display, now_ms: int) -> RenderableType:
    alarms = state.open_alarms()
    table = Table(expand=True, title=f"Open alarms: {len(alarms)}", title_justify="left")
    for column in (f"since ({display.tz.key})", "for", "cabinet", "kind", "alarm", "ack"):
        table.add_column(column, no_wrap=True)
    for alarm in alarms:
        style = "dim" if alarm.acked else "bold red"
        acked = "NOT ACKED"
        if alarm.acked:
            by = alarm.acked_by
            acked = f"acked by {display.person(alarm.device, by)}" if by else "acked"
        table.add_row(
            display.when(alarm.since_ms),
            _age(now_ms, alarm.since_ms),
            alarm.device,
            alarm.kind,
            alarm.alarm,
            acked,
            style=style,
        )
    return table


def problem_lines(state: WatchState, display: Display, limit: int) -> RenderableType:
    lines = [
        _one_row(
            f"{display.clock(p.at_ms)}  {p.device or '?'}  seq {p.seq or '-'}  {p.problem}", "red"
        )
        for p in list(state.problems)[-limit:]
    ]
    gaps = state.open_gaps()
    if gaps:
        missing = ", ".join(f"{device} {text}" for device, text in gaps[:6])
        more = f" and {len(gaps) - 6} more" if len(gaps) > 6 else ""
        lines.append(_one_row(f"missing (resend asked): {missing}{more}", "bold yellow"))
    return Group(*lines) if lines else Text("none", "dim")


def _one_row(text: str, style: str = "") -> Text:
    return Text(text, style, no_wrap=True, overflow="ellipsis")


def summarize(data: Mapping[str, Any], display: Display, device: str | None) -> str:
    """`key=value ...` of an event's data: masses in grams, people by name."""
    parts = []
    for key, value in data.items():
        if key.endswith("_mg") and type(value) is int:
            parts.append(f"{key.removesuffix('_mg')}={grams(value)} g")
        elif key in PERSON_KEYS and isinstance(value, str):
            parts.append(f"{key}={display.person(device, value)}")
        elif key in PERSON_LISTS and isinstance(value, list):
            people = ", ".join(display.person(device, str(p)) for p in value)
            parts.append(f"{key}=[{people}]")
        elif isinstance(value, list) and len(value) > 3:
            parts.append(f"{key}=[{len(value)}]")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def log_line(seen: Seen, display: Display) -> Text:
    mark = Text("✔ ", "green") if seen.verified else Text("✖ ", "bold red")
    env = seen.envelope or {}
    when = display.clock(int(env["ts"])) if "ts" in env else display.clock(seen.at_ms)
    style = (
        "bold" if env.get("sev") == "alarm" else ("yellow" if env.get("sev") == "warning" else "")
    )
    body = Text.assemble(
        mark,
        f"{when}  ",
        (f"{seen.device or '?'} ", "cyan"),
        f"#{seen.seq if seen.seq is not None else '-'} ",
        (f"{seen.type or ''} ", style),
        summarize(env.get("data", {}), display, seen.device),
    )
    if seen.problem:
        body.append(f"  [{seen.problem}]", "bold red")
    body.no_wrap, body.overflow = True, "ellipsis"  # one row: the newest line stays on screen
    return body


def render(
    state: WatchState,
    display: Display,
    *,
    now_ms: int,
    broker: str,
    connected: bool,
    height: int = 40,
) -> RenderableType:
    alarms = len(state.alarms)
    problems = min(len(state.problems), 5) + (1 if state.open_gaps() else 0)
    log_rows = max(3, height - 9 - (alarms + 4) - (problems + 2))
    lines = [log_line(s, display) for s in list(state.log)[-log_rows:]]
    layout = Layout()
    layout.split_column(
        Layout(header(state, display, now_ms, broker, connected), name="header", size=4),
        Layout(alarm_table(state, display, now_ms), name="alarms", size=alarms + 5),
        Layout(
            Panel(
                problem_lines(state, display, 5),
                title=f"Problems (newest last, {state.counts['problems']} in all)",
                border_style="red",
            ),
            name="problems",
            size=problems + 2 if problems else 3,
        ),
        Layout(Panel(Group(*lines), title="Event log (✔ verified, ✖ not believed)"), name="log"),
    )
    return layout
