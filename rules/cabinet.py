"""The cabinet's decisions as one sans-I/O state machine: `step(input, now) -> effects`.

No threads, clock reads or I/O here (like h11): the core feeds inputs and fired timers,
performs the effects, and the same code runs live, in replay and in property tests.

Outputs are derived from state after every step, never set ad hoc, which makes the
safety invariants structural: the lock relay is energised only while a granted session
is in its unlock window; the fan runs for VOC, leak or an open door; the buzzer sounds
for unacknowledged alarms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from config.policy import Policy
from rules import commands, durable
from rules.access import AccessControl, Grant
from rules.alarms import AlarmBook
from rules.effects import CancelTimer, Effect, Emit, Instant, OutputName, SetOutput, StartTimer
from rules.environment import VOC_CLEAR, VOC_RAISE, Environment
from rules.inputs import (
    AnyInput,
    Badge,
    ClockStatus,
    CommandReceived,
    CommandRejected,
    DoorChanged,
    Heartbeat,
    LeakChanged,
    LockFeedback,
    PolicyLoaded,
    ReaderFault,
    ReaderRecovered,
    Reloaded,
    SensorFault,
    SensorRecovered,
    Started,
    Stopping,
    TamperChanged,
    Tick,
    TimerFired,
    VocReading,
    WeightReading,
)
from rules.inventory import MassLedger, SessionView, Slot

UNLOCK_TIMER = "unlock"
DOOR_HELD_TIMER = "door_held"
RECONCILE_TIMER = "reconcile"
TELEMETRY_TIMER = "telemetry"
OUTPUTS: tuple[OutputName, ...] = ("lock", "fan", "buzzer", "led_green", "led_red")
# Weights still moving when the door closed: wait up to this many settle periods, then
# reconcile with what there is rather than leave the session open for ever.
MAX_RECONCILE_WAITS = 3
START_CHECK_TIMER = "start_check"
# After a restart, restored alarms are re-checked once the sensors have reported (every
# ~1 s) and the scales had `settle_s` to settle: this many seconds beyond settle_s.
START_CHECK_S = 3


@dataclass
class Session:
    id: str
    grant: Grant
    phase: str = "unlocked"  # unlocked -> open -> settling -> (gone)
    waits: int = 0
    view: SessionView = field(init=False)

    def __post_init__(self) -> None:
        self.view = SessionView(self.id, self.grant.persons)


class CabinetRules:
    def __init__(self, device: str, version: str = "0") -> None:
        self.device = device
        self.version = version
        self.boot = 1
        self.policy: Policy | None = None
        self.alarms = AlarmBook()
        self.access = AccessControl()
        self.ledger = MassLedger()
        self.env = Environment()
        self.session: Session | None = None
        self.door_open: bool | None = None
        self.door_opened_wall_ms: int | None = None  # for door_held_open across a restart
        self.tamper_open = False
        self.outputs: dict[OutputName, bool] = dict.fromkeys(OUTPUTS, False)
        self.stopped = False
        self._sessions = 0
        self._handlers: dict[type, Callable[[list[Effect], Instant, Any], object]] = {
            Badge: self._badge,
            DoorChanged: self._door,
            LockFeedback: self._lock_feedback,
            WeightReading: self._weight,
            VocReading: lambda out, now, i: self.env.voc(out, now, self.policy, self.alarms, i.ppb),
            LeakChanged: lambda out, now, i: self.env.leak(out, now, self.alarms, i.wet),
            TamperChanged: self._tamper,
            SensorFault: self._sensor_fault,
            SensorRecovered: self._sensor_recovered,
            ReaderFault: lambda out, now, i: self.alarms.raise_(
                out, now, "reader_fault", i.reader, reader=i.reader, detail=i.detail
            ),
            ReaderRecovered: lambda out, now, i: self.alarms.clear(
                out, "reader_fault", i.reader, reader=i.reader
            ),
            CommandReceived: lambda out, now, i: commands.handle(self, out, now, i),
            CommandRejected: lambda out, now, i: commands.rejected(out, i),
            PolicyLoaded: lambda out, now, i: commands.load_policy(self, out, now, i),
            TimerFired: self._timer,
            Tick: lambda out, now, i: None,
            Started: self._started,
            Heartbeat: self._heartbeat,
            ClockStatus: self._clock,
            Reloaded: lambda out, now, r: out.append(
                Emit("system.reloaded", "info", {"detail": r.detail})
                if r.applied
                else Emit("system.reload_refused", "warning", {"detail": r.detail})
            ),
            Stopping: self._stopping,
        }

    # --- the one entry point -----------------------------------------------------------

    def step(self, event: AnyInput, now: Instant) -> list[Effect]:
        handler = self._handlers.get(type(event))
        if handler is None:
            raise TypeError(f"the rules do not take {type(event).__name__}")
        out: list[Effect] = []
        if self.stopped and not isinstance(event, Stopping):
            return out  # after system.stopping nothing may change state
        handler(out, now, event)
        self._derive_outputs(out)
        return out

    def _derive_outputs(self, out: list[Effect]) -> None:
        env_policy = self.policy.environment if self.policy else None
        wanted: dict[OutputName, bool] = {
            "lock": self.session is not None
            and self.session.phase == "unlocked"
            and not self.stopped,
            "fan": self.alarms.is_open("voc_high")
            or self.alarms.is_open("leak")
            or bool(self.door_open and env_policy is not None and env_policy.fan_on_door_open),
            "buzzer": self.alarms.buzzer_wanted,
            "led_green": self.session is not None,
            "led_red": self.alarms.any_open,
        }
        for name in OUTPUTS:
            if wanted[name] != self.outputs[name]:
                self.outputs[name] = wanted[name]
                out.append(SetOutput(name, wanted[name]))

    # --- access and the door -----------------------------------------------------------

    def _badge(self, out: list[Effect], now: Instant, badge: Badge) -> None:
        # A badge read is proof the reader works: this is how a reader_fault restored at
        # start clears when its driver has no fault of its own to report recovered.
        self.alarms.clear(out, "reader_fault", badge.reader, reader=badge.reader)
        busy = self.session is not None or bool(self.door_open)
        grant = self.access.badge(
            out, now, self.policy, self.device, badge.reader, badge.uid, busy, self.alarms
        )
        if grant is not None:
            self.grant(out, now, grant)

    def grant(self, out: list[Effect], now: Instant, grant: Grant) -> None:
        assert self.policy is not None
        self._sessions += 1
        session = Session(f"S{self.boot}-{self._sessions}", grant)
        self.session = session
        data: dict[str, Any] = {
            "persons": list(grant.persons),
            "readers": list(grant.readers),
            "mode": grant.mode,
            "session": session.id,
        }
        if grant.approval is not None:
            data["approval"] = grant.approval
        out.append(Emit("access.granted", "info", data))
        out.append(Emit("lock.unlocked", "info", {"session": session.id, "reason": "granted"}))
        out.append(StartTimer(UNLOCK_TIMER, now.mono_ms + self.policy.access.unlock_s * 1000))

    def _door(self, out: list[Effect], now: Instant, door: DoorChanged) -> None:
        if door.open == self.door_open:
            return  # a repeated level from a driver is not a new event
        first_reading = self.door_open is None
        self.door_open = door.open
        self.door_opened_wall_ms = now.wall_ms if door.open else None
        if first_reading and not door.open:
            return  # the door was shut when we started: nothing happened
        session = self.session
        held_s = self.policy.access.door_held_s if self.policy else 120
        if door.open:
            if session is not None and session.phase == "unlocked":
                session.phase = "open"
                out.append(Emit("door.opened", "info", {"session": session.id}))
                out.append(
                    Emit("lock.locked", "info", {"session": session.id, "reason": "door_opened"})
                )
                out.append(CancelTimer(UNLOCK_TIMER))
            else:
                out.append(Emit("door.opened", "info", {"session": None}))
                self.alarms.raise_(out, now, "door_forced", session=None)
            out.append(StartTimer(DOOR_HELD_TIMER, now.mono_ms + held_s * 1000))
            return
        in_session = session is not None and session.phase == "open"
        out.append(
            Emit("door.closed", "info", {"session": session.id if in_session and session else None})
        )
        out.append(CancelTimer(DOOR_HELD_TIMER))
        self.alarms.clear(out, "door_held_open")
        self.alarms.clear(out, "door_forced")
        if in_session and session is not None:
            session.phase = "settling"
            self._schedule_reconcile(out, now)

    def _schedule_reconcile(self, out: list[Effect], now: Instant) -> None:
        settle_s = self.policy.inventory.settle_s if self.policy else 0
        out.append(StartTimer(RECONCILE_TIMER, now.mono_ms + max(settle_s, 1) * 1000))

    def _reconcile(self, out: list[Effect], now: Instant) -> None:
        session, policy = self.session, self.policy
        if session is None or session.phase != "settling" or policy is None:
            return
        if not self.ledger.all_settled(now, policy) and session.waits < MAX_RECONCILE_WAITS:
            session.waits += 1
            self._schedule_reconcile(out, now)
            return
        self.ledger.reconcile(out, now, policy, self.alarms, session.view)
        self.session = None

    def _lock_feedback(self, out: list[Effect], now: Instant, fb: LockFeedback) -> None:
        # Relay off with the door shut must mean the bolt is thrown; anything else is a
        # lock forced or jammed open.
        if not fb.engaged and not self.outputs["lock"] and self.door_open is False:
            self.alarms.raise_(out, now, "tamper", "bolt", detail="bolt_not_engaged")
        elif fb.engaged:
            self.alarms.clear(out, "tamper", "bolt")

    def _tamper(self, out: list[Effect], now: Instant, t: TamperChanged) -> None:
        self.tamper_open = t.open
        if t.open:
            self.alarms.raise_(out, now, "tamper", "switch", detail="enclosure_open")
        else:
            self.alarms.clear(out, "tamper", "switch")

    # --- sensors -----------------------------------------------------------------------

    def _weight(self, out: list[Effect], now: Instant, w: WeightReading) -> None:
        policy = self.policy
        if policy is None:
            self.ledger.slots.setdefault(w.slot, Slot(w.slot, None, present=False)).candidate = w.mg
            return
        if w.mg < 0:
            self.alarms.raise_(
                out,
                now,
                "sensor_fault",
                f"scale:{w.slot}",
                sensor=f"scale:{w.slot}",
                detail="out_of_range",
                value=w.mg,
            )
            return
        self.env.seen(out, now, policy, self.alarms, f"scale:{w.slot}")
        if self.ledger.reading(out, now, policy, w.slot, w.mg):
            self._settled(out, now, w.slot)

    def _settled(self, out: list[Effect], now: Instant, slot: int) -> None:
        # Until the door opens, a granted session has touched nothing: a change then is
        # as unexplained as one outside any session.
        unattended = self.session is None or self.session.phase == "unlocked"
        if unattended and self.policy is not None:
            self.ledger.check_unattended(out, now, self.policy, self.alarms, slot)

    def _sensor_fault(self, out: list[Effect], now: Instant, f: SensorFault) -> None:
        if f.sensor == "uplink":  # the uplink's trouble is a system warning, not an alarm
            out.append(Emit("system.warning", "warning", {"problem": "uplink", "detail": f.detail}))
            return
        self.alarms.raise_(out, now, "sensor_fault", f.sensor, sensor=f.sensor, detail=f.detail)

    def _sensor_recovered(self, out: list[Effect], now: Instant, r: SensorRecovered) -> None:
        if r.sensor == "uplink":
            out.append(Emit("system.warning_cleared", "info", {"problem": "uplink"}))
            return
        self.alarms.clear(out, "sensor_fault", r.sensor, sensor=r.sensor)

    # --- time ----------------------------------------------------------------------------

    def _timer(self, out: list[Effect], now: Instant, fired: TimerFired) -> None:
        name, policy = fired.name, self.policy
        if name in ("pair", "lockout"):
            self.access.timer(out, now, name, self.alarms)
        elif name == UNLOCK_TIMER and self.session is not None and self.session.phase == "unlocked":
            out.append(
                Emit("lock.locked", "info", {"session": self.session.id, "reason": "timeout"})
            )
            self.session = None
            if policy is not None:
                for slot in sorted(self.ledger.slots):
                    self.ledger.check_unattended(out, now, policy, self.alarms, slot)
        elif name == DOOR_HELD_TIMER and self.door_open:
            session = self.session.id if self.session else None
            self.alarms.raise_(out, now, "door_held_open", session=session)
        elif name == RECONCILE_TIMER:
            self._reconcile(out, now)
        elif name == START_CHECK_TIMER:
            self._start_check(out, now)
        elif policy is None:
            return
        elif name.startswith("settle:"):
            slot = int(name.removeprefix("settle:"))
            self.ledger.settle(now, policy, slot)
            self._settled(out, now, slot)
        elif name.startswith("overdue:"):
            self.ledger.overdue(out, now, self.alarms, name.removeprefix("overdue:"))
        elif name in (VOC_RAISE, VOC_CLEAR) or name.startswith("stale:"):
            self.env.timer(out, now, policy, self.alarms, name)
        elif name == TELEMETRY_TIMER:
            self._telemetry(out, now, policy)

    def _telemetry(self, out: list[Effect], now: Instant, policy: Policy) -> None:
        out.append(
            Emit(
                "env.reading",
                "info",
                {
                    "voc_ppb": self.env.voc_ppb,
                    "leak_wet": self.env.leak_wet,
                    "door_open": self.door_open,
                },
            )
        )
        out.append(
            StartTimer(TELEMETRY_TIMER, now.mono_ms + policy.environment.reading_period_s * 1000)
        )

    # --- lifecycle -----------------------------------------------------------------------

    def _started(self, out: list[Effect], now: Instant, s: Started) -> None:
        self.boot = s.boot
        self.alarms.boot = s.boot
        data = {"version": s.version, "boot": s.boot, "resumed_from_seq": s.resumed_from_seq}
        out.append(Emit("system.started", "info", data))
        # Fail-secure: whatever the pins did before, the first outputs are all off.
        out.extend(SetOutput(name, False) for name in OUTPUTS)
        if s.state is None:
            return
        mark = len(out)
        try:
            durable.restore(self, out, now, s.state)
        except durable.StateError as exc:
            del out[mark:]
            self.policy, self.session, self.door_open = None, None, None
            self.alarms, self.access, self.ledger = AlarmBook(), AccessControl(), MassLedger()
            self.alarms.boot = s.boot
            out.append(
                Emit(
                    "system.warning", "warning", {"problem": "state_unreadable", "detail": str(exc)}
                )
            )
            return
        if self.policy is not None:
            period = self.policy.environment.reading_period_s * 1000
            out.append(StartTimer(TELEMETRY_TIMER, now.mono_ms + period))
            settle_s = max(self.policy.inventory.settle_s, 1)
            out.append(
                StartTimer(START_CHECK_TIMER, now.mono_ms + (settle_s + START_CHECK_S) * 1000)
            )

    def resume_session(
        self, out: list[Effect], now: Instant, session_id: str, grant: Grant, phase: str
    ) -> None:
        """A session whose door had opened goes on after a restart (durable.restore)."""
        self.session = Session(session_id, grant, phase)
        if phase == "settling":
            self._schedule_reconcile(out, now)

    def _start_check(self, out: list[Effect], now: Instant) -> None:
        """The first fresh readings are in: alarms restored at start whose condition is
        gone are cleared (`condition_gone_at_start`); the rest stay open under their id."""
        policy = self.policy
        if self.door_open is False:
            self.alarms.clear(out, "door_forced")
            self.alarms.clear(out, "door_held_open")
        if self.env.leak_wet is False:
            self.alarms.clear(out, "leak")
        voc = self.env.voc_ppb
        if policy is not None and voc is not None and voc < policy.environment.voc_clear_ppb:
            self.alarms.clear(out, "voc_high", voc_ppb=voc)
        if policy is not None and self.session is None:
            for slot in sorted(self.ledger.slots):
                self.ledger.check_unattended(out, now, policy, self.alarms, slot)
        self.alarms.end_start_check()

    def _heartbeat(self, out: list[Effect], now: Instant, hb: Heartbeat) -> None:
        data = {
            **hb.data,
            "sensors": self.env.freshness(now),
            "policy_version": self.policy.version if self.policy else None,
        }
        out.append(Emit("system.heartbeat", "info", data))

    def _clock(self, out: list[Effect], now: Instant, c: ClockStatus) -> None:
        if c.synchronized:
            self.alarms.clear(out, "clock_unsynced")
        else:
            self.alarms.raise_(
                out, now, "clock_unsynced", detail="wall clock not synchronised (NTP)"
            )

    def _stopping(self, out: list[Effect], now: Instant, s: Stopping) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.session is not None and self.session.phase == "unlocked":
            # The relay drops as the agent stops: record it like any other locking.
            out.append(
                Emit("lock.locked", "info", {"session": self.session.id, "reason": "stopping"})
            )
        out.append(
            Emit(
                "system.stopping",
                "info",
                {"version": self.version, "boot": self.boot, "reason": s.reason},
            )
        )
