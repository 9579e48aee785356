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
from typing import Any

from config.policy import Policy
from rules import commands, durable, system, tapout
from rules.access import AccessControl, Grant
from rules.alarms import AlarmBook
from rules.books import Slot
from rules.effects import Effect, Instant, OutputName, SetOutput
from rules.environment import Environment
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
    UplinkRecovered,
    UplinkTrouble,
    VocReading,
    WeightReading,
)
from rules.inventory import MassLedger
from rules.session import Phase, Session, opened_gross
from rules.step import Step
from rules.tapout import TapOut
from rules.timers import Overdue, Settle, Stale, Timer, TimerKey

OUTPUTS: tuple[OutputName, ...] = ("lock", "fan", "buzzer", "led_green", "led_red")
# Weights still moving when the door closed: wait up to this many settle periods, then
# reconcile with what there is rather than leave the session open for ever.
MAX_RECONCILE_WAITS = 3


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
        self.tap_out: TapOut | None = None
        self.door_open: bool | None = None
        self.door_opened_wall_ms: int | None = None  # for door_held_open across a restart
        self.tamper_open = False
        self.outputs: dict[OutputName, bool] = dict.fromkeys(OUTPUTS, False)
        self.stopped = False
        self._sessions = 0
        self._handlers: dict[type, Callable[[Step, Any], object]] = {
            Badge: self._badge,
            DoorChanged: self._door,
            LockFeedback: self._lock_feedback,
            WeightReading: self._weight,
            VocReading: self._voc,
            LeakChanged: self._leak,
            TamperChanged: self._tamper,
            SensorFault: self._sensor_fault,
            SensorRecovered: self._sensor_recovered,
            ReaderFault: self._reader_fault,
            ReaderRecovered: self._reader_recovered,
            UplinkTrouble: self._uplink,
            UplinkRecovered: self._uplink,
            CommandReceived: self._command,
            CommandRejected: self._command_rejected,
            PolicyLoaded: self._policy_loaded,
            TimerFired: self._timer,
            Tick: self._tick,
            Started: self._started,
            Heartbeat: self._heartbeat,
            ClockStatus: self._clock,
            Reloaded: self._reloaded,
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
        handler(Step(now, self.policy, self.alarms, out), event)
        self._derive_outputs(out)
        return out

    def _derive_outputs(self, out: list[Effect]) -> None:
        env_policy = self.policy.environment if self.policy else None
        wanted: dict[OutputName, bool] = {
            "lock": self.session is not None
            and self.session.phase is Phase.UNLOCKED
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

    def _badge(self, ctx: Step, badge: Badge) -> None:
        # A badge read is proof the reader works: this is how a reader_fault restored at
        # start clears when its driver has no fault of its own to report recovered.
        ctx.clear("reader_fault", badge.reader, reader=badge.reader)
        person = self.policy.person_by_card(badge.uid) if self.policy else None
        if self.tap_out is not None and person is not None:
            was_tap_out, complete = tapout.badge(ctx, self.tap_out, person.id, badge.reader)
            if complete:
                self.tap_out = None
            if was_tap_out:
                return  # a tap-out badge never starts a new session
        busy = self.session is not None or bool(self.door_open)
        grant = self.access.badge(ctx, self.device, badge.reader, badge.uid, busy)
        if grant is not None:
            self.grant(ctx, grant)

    def grant(self, ctx: Step, grant: Grant) -> None:
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
        ctx.emit("access.granted", "info", data)
        ctx.emit("lock.unlocked", "info", {"session": session.id, "reason": "granted"})
        ctx.start(Timer.UNLOCK, self.policy.access.unlock_s * 1000)

    def _door(self, ctx: Step, door: DoorChanged) -> None:
        if door.open == self.door_open:
            return  # a repeated level from a driver is not a new event
        first_reading = self.door_open is None
        self.door_open = door.open
        self.door_opened_wall_ms = ctx.now.wall_ms if door.open else None
        if first_reading and not door.open:
            return  # the door was shut when we started: nothing happened
        session = self.session
        held_s = self.policy.access.door_held_s if self.policy else 120
        if door.open:
            if session is not None and session.phase is Phase.UNLOCKED:
                session.to(Phase.OPEN)
                session.view.opened_gross = opened_gross(self.ledger.slots, self.alarms)
                ctx.emit("door.opened", "info", {"session": session.id})
                ctx.emit("lock.locked", "info", {"session": session.id, "reason": "door_opened"})
                ctx.cancel(Timer.UNLOCK)
            else:
                ctx.emit("door.opened", "info", {"session": None})
                ctx.raise_("door_forced", session=None)
            ctx.start(Timer.DOOR_HELD, held_s * 1000)
            return
        in_session = session is not None and session.phase is Phase.OPEN
        ctx.emit("door.closed", "info", {"session": session.id if in_session and session else None})
        ctx.cancel(Timer.DOOR_HELD)
        ctx.clear("door_held_open")
        ctx.clear("door_forced")
        if in_session and session is not None:
            session.to(Phase.SETTLING)
            self._schedule_reconcile(ctx)
            if self.policy is not None:
                self.tap_out = tapout.begin(ctx, self.policy, session)

    def _schedule_reconcile(self, ctx: Step) -> None:
        settle_s = self.policy.inventory.settle_s if self.policy else 0
        ctx.start(Timer.RECONCILE, max(settle_s, 1) * 1000)

    def _reconcile(self, ctx: Step) -> None:
        session, policy = self.session, self.policy
        if session is None or session.phase is not Phase.SETTLING or policy is None:
            return
        if not self.ledger.all_settled() and session.waits < MAX_RECONCILE_WAITS:
            session.waits += 1
            self._schedule_reconcile(ctx)
            return
        self.ledger.reconcile(ctx, policy, session.view)
        self._end_session(session)

    def _end_session(self, session: Session) -> None:
        session.to(Phase.ENDED)
        self.session = None

    def _lock_feedback(self, ctx: Step, fb: LockFeedback) -> None:
        # Relay off with the door shut must mean the bolt is thrown; anything else is a
        # lock forced or jammed open.
        if not fb.engaged and not self.outputs["lock"] and self.door_open is False:
            ctx.raise_("tamper", "bolt", detail="bolt_not_engaged")
        elif fb.engaged:
            ctx.clear("tamper", "bolt")

    def _tamper(self, ctx: Step, t: TamperChanged) -> None:
        self.tamper_open = t.open
        if t.open:
            ctx.raise_("tamper", "switch", detail="enclosure_open")
        else:
            ctx.clear("tamper", "switch")

    # --- sensors -----------------------------------------------------------------------

    def _weight(self, ctx: Step, w: WeightReading) -> None:
        policy = self.policy
        if policy is None:
            self.ledger.slots.setdefault(w.slot, Slot(w.slot, None, present=False)).candidate = w.mg
            return
        if w.mg < 0:
            sensor = f"scale:{w.slot}"
            ctx.raise_("sensor_fault", sensor, sensor=sensor, detail="out_of_range", value=w.mg)
            return
        self.env.seen(ctx, policy, f"scale:{w.slot}")
        if self.ledger.reading(ctx, policy, w.slot, w.mg):
            self._settled(ctx, w.slot)

    def _settled(self, ctx: Step, slot: int) -> None:
        # Until the door opens, a granted session has touched nothing: a change then is
        # as unexplained as one outside any session.
        unattended = self.session is None or self.session.phase is Phase.UNLOCKED
        if unattended and self.policy is not None:
            self.ledger.check_unattended(ctx, self.policy, slot)

    def _voc(self, ctx: Step, v: VocReading) -> None:
        self.env.voc(ctx, v.ppb)

    def _leak(self, ctx: Step, leak: LeakChanged) -> None:
        self.env.leak(ctx, leak.wet)

    def _sensor_fault(self, ctx: Step, f: SensorFault) -> None:
        ctx.raise_("sensor_fault", f.sensor, sensor=f.sensor, detail=f.detail)

    def _sensor_recovered(self, ctx: Step, r: SensorRecovered) -> None:
        ctx.clear("sensor_fault", r.sensor, sensor=r.sensor)

    def _reader_fault(self, ctx: Step, f: ReaderFault) -> None:
        ctx.raise_("reader_fault", f.reader, reader=f.reader, detail=f.detail)

    def _reader_recovered(self, ctx: Step, r: ReaderRecovered) -> None:
        ctx.clear("reader_fault", r.reader, reader=r.reader)

    # --- commands and news -------------------------------------------------------------

    def _command(self, ctx: Step, cmd: CommandReceived) -> None:
        commands.handle(self, ctx, cmd)

    def _command_rejected(self, ctx: Step, r: CommandRejected) -> None:
        commands.rejected(ctx, r)

    def _policy_loaded(self, ctx: Step, loaded: PolicyLoaded) -> None:
        commands.load_policy(self, ctx, loaded)

    def _uplink(self, ctx: Step, news: UplinkTrouble | UplinkRecovered) -> None:
        system.uplink(ctx, news)

    def _tick(self, ctx: Step, tick: Tick) -> None:
        return None  # time passed: the core has already fired what fell due

    def _heartbeat(self, ctx: Step, hb: Heartbeat) -> None:
        system.heartbeat(ctx, hb, self.env)

    def _clock(self, ctx: Step, c: ClockStatus) -> None:
        system.clock(ctx, c)

    def _reloaded(self, ctx: Step, r: Reloaded) -> None:
        system.reloaded(ctx, r)

    # --- time ----------------------------------------------------------------------------

    def _timer(self, ctx: Step, fired: TimerFired) -> None:
        key: TimerKey = fired.key
        policy = self.policy
        if isinstance(key, Timer):
            self._fixed_timer(ctx, key)
        elif policy is None:
            return
        elif isinstance(key, Settle):
            self.ledger.settle(ctx.now, policy, key.slot)
            self._settled(ctx, key.slot)
        elif isinstance(key, Overdue):
            self.ledger.overdue(ctx, key.container)
        elif isinstance(key, Stale):
            self.env.stale(ctx, policy, key.sensor)

    def _fixed_timer(self, ctx: Step, key: Timer) -> None:
        policy, session = self.policy, self.session
        if key is Timer.PAIR:
            self.access.pair_window_ended(ctx)
        elif key is Timer.LOCKOUT:
            self.access.lockout_ended(ctx)
        elif key is Timer.UNLOCK and session is not None and session.phase is Phase.UNLOCKED:
            ctx.emit("lock.locked", "info", {"session": session.id, "reason": "timeout"})
            self._end_session(session)
            if policy is not None:
                for slot in sorted(self.ledger.slots):
                    self.ledger.check_unattended(ctx, policy, slot)
        elif key is Timer.DOOR_HELD and self.door_open:
            ctx.raise_("door_held_open", session=session.id if session else None)
        elif key is Timer.RECONCILE:
            self._reconcile(ctx)
        elif key is Timer.TAP_OUT and self.tap_out is not None:
            tapout.expired(ctx, self.tap_out)
            self.tap_out = None
        elif key is Timer.START_CHECK:
            durable.start_check(self, ctx)
        elif policy is None:
            return
        elif key is Timer.VOC_RAISE:
            self.env.voc_held_high(ctx, policy)
        elif key is Timer.VOC_CLEAR:
            self.env.voc_held_low(ctx, policy)
        elif key is Timer.TELEMETRY:
            system.telemetry(ctx, self.env, self.door_open)

    # --- lifecycle -----------------------------------------------------------------------

    def _started(self, ctx: Step, s: Started) -> None:
        self.boot = s.boot
        self.alarms.boot = s.boot
        data = {"version": s.version, "boot": s.boot, "resumed_from_seq": s.resumed_from_seq}
        ctx.emit("system.started", "info", data)
        # Fail-secure: whatever the pins did before, the first outputs are all off.
        ctx.out.extend(SetOutput(name, False) for name in OUTPUTS)
        if s.state is not None:
            durable.resume(self, ctx, s.state)

    def forget(self) -> None:
        """Start from nothing (a saved state that cannot be read): no policy, no books."""
        self.policy, self.session, self.door_open, self.tap_out = None, None, None, None
        self.alarms, self.access, self.ledger = AlarmBook(), AccessControl(), MassLedger()
        self.alarms.boot = self.boot

    def resume_session(
        self, ctx: Step, session_id: str, grant: Grant, phase: Phase, opened: dict[int, int]
    ) -> None:
        """A session whose door had opened goes on after a restart (durable.restore)."""
        self.session = Session(session_id, grant, phase)
        self.session.view.opened_gross = opened
        if phase is Phase.SETTLING:
            self._schedule_reconcile(ctx)

    def _stopping(self, ctx: Step, s: Stopping) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.session is not None and self.session.phase is Phase.UNLOCKED:
            # The relay drops as the agent stops: record it like any other locking.
            ctx.emit("lock.locked", "info", {"session": self.session.id, "reason": "stopping"})
        data = {"version": self.version, "boot": self.boot, "reason": s.reason}
        ctx.emit("system.stopping", "info", data)
