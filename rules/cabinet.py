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
from rules import commands, durable, system
from rules.access import AccessControl, Grant
from rules.alarms import AlarmBook
from rules.effects import CancelTimer, Effect, Emit, Instant, OutputName, SetOutput, StartTimer
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
from rules.inventory import MassLedger, Slot
from rules.session import Phase, Session
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
        handler(out, now, event)
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
        out.append(StartTimer(Timer.UNLOCK, now.mono_ms + self.policy.access.unlock_s * 1000))

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
            if session is not None and session.phase is Phase.UNLOCKED:
                session.to(Phase.OPEN)
                out.append(Emit("door.opened", "info", {"session": session.id}))
                out.append(
                    Emit("lock.locked", "info", {"session": session.id, "reason": "door_opened"})
                )
                out.append(CancelTimer(Timer.UNLOCK))
            else:
                out.append(Emit("door.opened", "info", {"session": None}))
                self.alarms.raise_(out, now, "door_forced", session=None)
            out.append(StartTimer(Timer.DOOR_HELD, now.mono_ms + held_s * 1000))
            return
        in_session = session is not None and session.phase is Phase.OPEN
        out.append(
            Emit("door.closed", "info", {"session": session.id if in_session and session else None})
        )
        out.append(CancelTimer(Timer.DOOR_HELD))
        self.alarms.clear(out, "door_held_open")
        self.alarms.clear(out, "door_forced")
        if in_session and session is not None:
            session.to(Phase.SETTLING)
            self._schedule_reconcile(out, now)

    def _schedule_reconcile(self, out: list[Effect], now: Instant) -> None:
        settle_s = self.policy.inventory.settle_s if self.policy else 0
        out.append(StartTimer(Timer.RECONCILE, now.mono_ms + max(settle_s, 1) * 1000))

    def _reconcile(self, out: list[Effect], now: Instant) -> None:
        session, policy = self.session, self.policy
        if session is None or session.phase is not Phase.SETTLING or policy is None:
            return
        if not self.ledger.all_settled(now, policy) and session.waits < MAX_RECONCILE_WAITS:
            session.waits += 1
            self._schedule_reconcile(out, now)
            return
        self.ledger.reconcile(out, now, policy, self.alarms, session.view)
        self._end_session(session)

    def _end_session(self, session: Session) -> None:
        session.to(Phase.ENDED)
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
        unattended = self.session is None or self.session.phase is Phase.UNLOCKED
        if unattended and self.policy is not None:
            self.ledger.check_unattended(out, now, self.policy, self.alarms, slot)

    def _voc(self, out: list[Effect], now: Instant, v: VocReading) -> None:
        self.env.voc(out, now, self.policy, self.alarms, v.ppb)

    def _leak(self, out: list[Effect], now: Instant, leak: LeakChanged) -> None:
        self.env.leak(out, now, self.alarms, leak.wet)

    def _sensor_fault(self, out: list[Effect], now: Instant, f: SensorFault) -> None:
        self.alarms.raise_(out, now, "sensor_fault", f.sensor, sensor=f.sensor, detail=f.detail)

    def _sensor_recovered(self, out: list[Effect], now: Instant, r: SensorRecovered) -> None:
        self.alarms.clear(out, "sensor_fault", r.sensor, sensor=r.sensor)

    def _reader_fault(self, out: list[Effect], now: Instant, f: ReaderFault) -> None:
        self.alarms.raise_(out, now, "reader_fault", f.reader, reader=f.reader, detail=f.detail)

    def _reader_recovered(self, out: list[Effect], now: Instant, r: ReaderRecovered) -> None:
        self.alarms.clear(out, "reader_fault", r.reader, reader=r.reader)

    # --- commands and news -------------------------------------------------------------

    def _command(self, out: list[Effect], now: Instant, cmd: CommandReceived) -> None:
        commands.handle(self, out, now, cmd)

    def _command_rejected(self, out: list[Effect], now: Instant, r: CommandRejected) -> None:
        commands.rejected(out, r)

    def _policy_loaded(self, out: list[Effect], now: Instant, loaded: PolicyLoaded) -> None:
        commands.load_policy(self, out, now, loaded)

    def _uplink(
        self, out: list[Effect], now: Instant, news: UplinkTrouble | UplinkRecovered
    ) -> None:
        system.uplink(out, news)

    def _tick(self, out: list[Effect], now: Instant, tick: Tick) -> None:
        return None  # time passed: the core has already fired what fell due

    def _heartbeat(self, out: list[Effect], now: Instant, hb: Heartbeat) -> None:
        system.heartbeat(out, now, hb, self.env, self.policy)

    def _clock(self, out: list[Effect], now: Instant, c: ClockStatus) -> None:
        system.clock(out, now, c, self.alarms)

    def _reloaded(self, out: list[Effect], now: Instant, r: Reloaded) -> None:
        system.reloaded(out, r)

    # --- time ----------------------------------------------------------------------------

    def _timer(self, out: list[Effect], now: Instant, fired: TimerFired) -> None:
        key: TimerKey = fired.key
        policy = self.policy
        if isinstance(key, Timer):
            self._fixed_timer(out, now, key)
        elif policy is None:
            return
        elif isinstance(key, Settle):
            self.ledger.settle(now, policy, key.slot)
            self._settled(out, now, key.slot)
        elif isinstance(key, Overdue):
            self.ledger.overdue(out, now, self.alarms, key.container)
        elif isinstance(key, Stale):
            self.env.stale(out, now, policy, self.alarms, key.sensor)

    def _fixed_timer(self, out: list[Effect], now: Instant, key: Timer) -> None:
        policy, session = self.policy, self.session
        if key is Timer.PAIR:
            self.access.pair_window_ended(out, now)
        elif key is Timer.LOCKOUT:
            self.access.lockout_ended(out, now, self.alarms)
        elif key is Timer.UNLOCK and session is not None and session.phase is Phase.UNLOCKED:
            out.append(Emit("lock.locked", "info", {"session": session.id, "reason": "timeout"}))
            self._end_session(session)
            if policy is not None:
                for slot in sorted(self.ledger.slots):
                    self.ledger.check_unattended(out, now, policy, self.alarms, slot)
        elif key is Timer.DOOR_HELD and self.door_open:
            self.alarms.raise_(out, now, "door_held_open", session=session.id if session else None)
        elif key is Timer.RECONCILE:
            self._reconcile(out, now)
        elif key is Timer.START_CHECK:
            durable.start_check(self, out, now)
        elif policy is None:
            return
        elif key is Timer.VOC_RAISE:
            self.env.voc_held_high(out, now, policy, self.alarms)
        elif key is Timer.VOC_CLEAR:
            self.env.voc_held_low(out, policy, self.alarms)
        elif key is Timer.TELEMETRY:
            system.telemetry(out, now, policy, self.env, self.door_open)

    # --- lifecycle -----------------------------------------------------------------------

    def _started(self, out: list[Effect], now: Instant, s: Started) -> None:
        self.boot = s.boot
        self.alarms.boot = s.boot
        data = {"version": s.version, "boot": s.boot, "resumed_from_seq": s.resumed_from_seq}
        out.append(Emit("system.started", "info", data))
        # Fail-secure: whatever the pins did before, the first outputs are all off.
        out.extend(SetOutput(name, False) for name in OUTPUTS)
        if s.state is not None:
            durable.resume(self, out, now, s.state)

    def forget(self) -> None:
        """Start from nothing (a saved state that cannot be read): no policy, no books."""
        self.policy, self.session, self.door_open = None, None, None
        self.alarms, self.access, self.ledger = AlarmBook(), AccessControl(), MassLedger()
        self.alarms.boot = self.boot

    def resume_session(
        self, out: list[Effect], now: Instant, session_id: str, grant: Grant, phase: Phase
    ) -> None:
        """A session whose door had opened goes on after a restart (durable.restore)."""
        self.session = Session(session_id, grant, phase)
        if phase is Phase.SETTLING:
            self._schedule_reconcile(out, now)

    def _stopping(self, out: list[Effect], now: Instant, s: Stopping) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.session is not None and self.session.phase is Phase.UNLOCKED:
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
