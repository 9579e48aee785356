"""Environment: VOC with hysteresis, leak, and sensors that go silent or out of range.

VOC above `voc_alarm_ppb` for `voc_hold_s` raises `voc_high` (ventilate, sound); it
clears only after staying below `voc_clear_ppb` for `voc_hold_s`, so a reading that
wobbles around one threshold cannot make the alarm flap. Crossing `voc_warn_ppb` gives
one `env.voc_warning` per excursion, not one per reading.
"""

from __future__ import annotations

from config.policy import Policy
from rules.effects import Instant
from rules.step import Step
from rules.timers import Stale, Timer


class Environment:
    def __init__(self) -> None:
        self.voc_ppb: int | None = None
        self.leak_wet: bool | None = None
        self.last_seen: dict[str, int] = {}  # sensor -> mono ms of its last good reading
        self._raise_pending = False
        self._clear_pending = False
        self._warned = False

    def voc(self, ctx: Step, ppb: int) -> None:
        policy = ctx.policy
        if policy is None:
            self.voc_ppb = ppb
            return
        env = policy.environment
        if not 0 <= ppb <= env.voc_max_ppb:
            # A reading outside the sensor's physical range is a broken sensor, not a value.
            ctx.raise_("sensor_fault", "voc", sensor="voc", detail="out_of_range", value=ppb)
            return
        self.seen(ctx, policy, "voc")
        self.voc_ppb = ppb
        hold_ms = env.voc_hold_s * 1000
        if not ctx.alarms.is_open("voc_high"):
            if ppb >= env.voc_alarm_ppb and not self._raise_pending:
                self._raise_pending = True
                ctx.start(Timer.VOC_RAISE, hold_ms)
            elif ppb < env.voc_alarm_ppb and self._raise_pending:
                self._raise_pending = False
                ctx.cancel(Timer.VOC_RAISE)
        elif ppb < env.voc_clear_ppb and not self._clear_pending:
            self._clear_pending = True
            ctx.start(Timer.VOC_CLEAR, hold_ms)
        elif ppb >= env.voc_clear_ppb and self._clear_pending:
            self._clear_pending = False
            ctx.cancel(Timer.VOC_CLEAR)
        if not self._warned and ppb >= env.voc_warn_ppb:
            self._warned = True
            ctx.emit("env.voc_warning", "warning", {"voc_ppb": ppb, "warn_ppb": env.voc_warn_ppb})
        elif self._warned and ppb < env.voc_clear_ppb:
            self._warned = False

    def voc_held_high(self, ctx: Step, policy: Policy) -> None:
        """VOC_RAISE fired: still at or above the alarm level after voc_hold_s?"""
        env, voc = policy.environment, self.voc_ppb
        if self._raise_pending:
            self._raise_pending = False
            if voc is not None and voc >= env.voc_alarm_ppb:
                ctx.raise_("voc_high", voc_ppb=voc, alarm_ppb=env.voc_alarm_ppb)

    def voc_held_low(self, ctx: Step, policy: Policy) -> None:
        """VOC_CLEAR fired: still below the clear level after voc_hold_s?"""
        env, voc = policy.environment, self.voc_ppb
        if self._clear_pending:
            self._clear_pending = False
            if voc is not None and voc < env.voc_clear_ppb:
                ctx.clear("voc_high", voc_ppb=voc)

    def stale(self, ctx: Step, policy: Policy, sensor: str) -> None:
        last, now = self.last_seen.get(sensor), ctx.now.mono_ms
        if last is not None and now - last >= policy.environment.sensor_stale_s * 1000:
            silent_s = (now - last) // 1000
            ctx.raise_("sensor_fault", sensor, sensor=sensor, detail="silent", silent_s=silent_s)

    def leak(self, ctx: Step, wet: bool) -> None:
        self.leak_wet = wet
        if wet:
            ctx.raise_("leak")
        else:
            ctx.clear("leak")

    def seen(self, ctx: Step, policy: Policy, sensor: str) -> None:
        """A good reading: the sensor is alive; restart its silence timer."""
        self.last_seen[sensor] = ctx.now.mono_ms
        ctx.clear("sensor_fault", sensor, sensor=sensor)
        ctx.start(Stale(sensor), policy.environment.sensor_stale_s * 1000)

    def freshness(self, now: Instant) -> dict[str, int]:
        return {s: (now.mono_ms - t) // 1000 for s, t in sorted(self.last_seen.items())}
