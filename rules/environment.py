"""Environment: VOC with hysteresis, leak, and sensors that go silent or out of range.

VOC above `voc_alarm_ppb` for `voc_hold_s` raises `voc_high` (ventilate, sound); it
clears only after staying below `voc_clear_ppb` for `voc_hold_s`, so a reading that
wobbles around one threshold cannot make the alarm flap. Crossing `voc_warn_ppb` gives
one `env.voc_warning` per excursion, not one per reading.
"""

from __future__ import annotations

from config.policy import Policy
from rules.alarms import AlarmBook
from rules.effects import CancelTimer, Effect, Emit, Instant, StartTimer
from rules.timers import Stale, Timer


class Environment:
    def __init__(self) -> None:
        self.voc_ppb: int | None = None
        self.leak_wet: bool | None = None
        self.last_seen: dict[str, int] = {}  # sensor -> mono ms of its last good reading
        self._raise_pending = False
        self._clear_pending = False
        self._warned = False

    def voc(
        self, out: list[Effect], now: Instant, policy: Policy | None, alarms: AlarmBook, ppb: int
    ) -> None:
        if policy is None:
            self.voc_ppb = ppb
            return
        env = policy.environment
        if not 0 <= ppb <= env.voc_max_ppb:
            # A reading outside the sensor's physical range is a broken sensor, not a value.
            alarms.raise_(
                out, now, "sensor_fault", "voc", sensor="voc", detail="out_of_range", value=ppb
            )
            return
        self.seen(out, now, policy, alarms, "voc")
        self.voc_ppb = ppb
        hold_ms = env.voc_hold_s * 1000
        if not alarms.is_open("voc_high"):
            if ppb >= env.voc_alarm_ppb and not self._raise_pending:
                self._raise_pending = True
                out.append(StartTimer(Timer.VOC_RAISE, now.mono_ms + hold_ms))
            elif ppb < env.voc_alarm_ppb and self._raise_pending:
                self._raise_pending = False
                out.append(CancelTimer(Timer.VOC_RAISE))
        elif ppb < env.voc_clear_ppb and not self._clear_pending:
            self._clear_pending = True
            out.append(StartTimer(Timer.VOC_CLEAR, now.mono_ms + hold_ms))
        elif ppb >= env.voc_clear_ppb and self._clear_pending:
            self._clear_pending = False
            out.append(CancelTimer(Timer.VOC_CLEAR))
        if not self._warned and ppb >= env.voc_warn_ppb:
            self._warned = True
            out.append(
                Emit("env.voc_warning", "warning", {"voc_ppb": ppb, "warn_ppb": env.voc_warn_ppb})
            )
        elif self._warned and ppb < env.voc_clear_ppb:
            self._warned = False

    def voc_held_high(
        self, out: list[Effect], now: Instant, policy: Policy, alarms: AlarmBook
    ) -> None:
        """VOC_RAISE fired: still at or above the alarm level after voc_hold_s?"""
        env, voc = policy.environment, self.voc_ppb
        if self._raise_pending:
            self._raise_pending = False
            if voc is not None and voc >= env.voc_alarm_ppb:
                alarms.raise_(out, now, "voc_high", voc_ppb=voc, alarm_ppb=env.voc_alarm_ppb)

    def voc_held_low(self, out: list[Effect], policy: Policy, alarms: AlarmBook) -> None:
        """VOC_CLEAR fired: still below the clear level after voc_hold_s?"""
        env, voc = policy.environment, self.voc_ppb
        if self._clear_pending:
            self._clear_pending = False
            if voc is not None and voc < env.voc_clear_ppb:
                alarms.clear(out, "voc_high", voc_ppb=voc)

    def stale(
        self, out: list[Effect], now: Instant, policy: Policy, alarms: AlarmBook, sensor: str
    ) -> None:
        last = self.last_seen.get(sensor)
        if last is not None and now.mono_ms - last >= policy.environment.sensor_stale_s * 1000:
            alarms.raise_(
                out,
                now,
                "sensor_fault",
                sensor,
                sensor=sensor,
                detail="silent",
                silent_s=(now.mono_ms - last) // 1000,
            )

    def leak(self, out: list[Effect], now: Instant, alarms: AlarmBook, wet: bool) -> None:
        self.leak_wet = wet
        if wet:
            alarms.raise_(out, now, "leak")
        else:
            alarms.clear(out, "leak")

    def seen(
        self, out: list[Effect], now: Instant, policy: Policy, alarms: AlarmBook, sensor: str
    ) -> None:
        """A good reading: the sensor is alive; restart its silence timer."""
        self.last_seen[sensor] = now.mono_ms
        alarms.clear(out, "sensor_fault", sensor, sensor=sensor)
        out.append(
            StartTimer(Stale(sensor), now.mono_ms + policy.environment.sensor_stale_s * 1000)
        )

    def freshness(self, now: Instant) -> dict[str, int]:
        return {s: (now.mono_ms - t) // 1000 for s, t in sorted(self.last_seen.items())}
