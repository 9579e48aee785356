"""The agent's own news: heartbeat, telemetry, clock, reloads and the uplink's trouble.

None of it touches the books or the lock; each is a small function of what it reports.
"""

from __future__ import annotations

from rules.environment import Environment
from rules.inputs import ClockStatus, Heartbeat, Reloaded, UplinkRecovered, UplinkTrouble
from rules.step import Step
from rules.timers import Timer


def heartbeat(ctx: Step, hb: Heartbeat, env: Environment) -> None:
    data = {
        **hb.data,
        "sensors": env.freshness(ctx.now),
        "policy_version": ctx.policy.version if ctx.policy else None,
    }
    ctx.emit("system.heartbeat", "info", data)


def telemetry(ctx: Step, env: Environment, door_open: bool | None) -> None:
    if ctx.policy is None:
        return
    data = {"voc_ppb": env.voc_ppb, "leak_wet": env.leak_wet, "door_open": door_open}
    ctx.emit("env.reading", "info", data)
    ctx.start(Timer.TELEMETRY, ctx.policy.environment.reading_period_s * 1000)


def clock(ctx: Step, c: ClockStatus) -> None:
    if c.synchronized:
        ctx.clear("clock_unsynced")
    else:
        ctx.raise_("clock_unsynced", detail="wall clock not synchronised (NTP)")


def reloaded(ctx: Step, r: Reloaded) -> None:
    if r.applied:
        ctx.emit("system.reloaded", "info", {"detail": r.detail})
    else:
        ctx.emit("system.reload_refused", "warning", {"detail": r.detail})


def uplink(ctx: Step, news: UplinkTrouble | UplinkRecovered) -> None:
    """The uplink's trouble is a system warning, not an alarm: nothing at the cabinet is
    wrong, and the record is kept until the broker takes it."""
    if isinstance(news, UplinkTrouble):
        ctx.emit("system.warning", "warning", {"problem": "uplink", "detail": news.detail})
    else:
        ctx.emit("system.warning_cleared", "info", {"problem": "uplink"})
