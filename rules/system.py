"""The agent's own news: heartbeat, telemetry, clock, reloads and the uplink's trouble.

None of it touches the books or the lock; each is a small function of what it reports.
"""

from __future__ import annotations

from config.policy import Policy
from rules.alarms import AlarmBook
from rules.effects import Effect, Emit, Instant, StartTimer
from rules.environment import Environment
from rules.inputs import ClockStatus, Heartbeat, Reloaded, UplinkRecovered, UplinkTrouble
from rules.timers import Timer


def heartbeat(
    out: list[Effect], now: Instant, hb: Heartbeat, env: Environment, policy: Policy | None
) -> None:
    data = {
        **hb.data,
        "sensors": env.freshness(now),
        "policy_version": policy.version if policy else None,
    }
    out.append(Emit("system.heartbeat", "info", data))


def telemetry(
    out: list[Effect], now: Instant, policy: Policy, env: Environment, door_open: bool | None
) -> None:
    data = {"voc_ppb": env.voc_ppb, "leak_wet": env.leak_wet, "door_open": door_open}
    out.append(Emit("env.reading", "info", data))
    period = policy.environment.reading_period_s * 1000
    out.append(StartTimer(Timer.TELEMETRY, now.mono_ms + period))


def clock(out: list[Effect], now: Instant, c: ClockStatus, alarms: AlarmBook) -> None:
    if c.synchronized:
        alarms.clear(out, "clock_unsynced")
    else:
        alarms.raise_(out, now, "clock_unsynced", detail="wall clock not synchronised (NTP)")


def reloaded(out: list[Effect], r: Reloaded) -> None:
    if r.applied:
        out.append(Emit("system.reloaded", "info", {"detail": r.detail}))
    else:
        out.append(Emit("system.reload_refused", "warning", {"detail": r.detail}))


def uplink(out: list[Effect], news: UplinkTrouble | UplinkRecovered) -> None:
    """The uplink's trouble is a system warning, not an alarm: nothing at the cabinet is
    wrong, and the record is kept until the broker takes it."""
    if isinstance(news, UplinkTrouble):
        out.append(Emit("system.warning", "warning", {"problem": "uplink", "detail": news.detail}))
    else:
        out.append(Emit("system.warning_cleared", "info", {"problem": "uplink"}))
