"""The core: the one thread that owns rule state and the outbox's write side.

Inputs arrive on the inbox from drivers and the downlink; due timers are fed back as
`TimerFired`. For each batch the core steps the rules, then performs the effects in the
only order that is safe:

1. append every emitted event to the outbox and commit (one transaction: group commit);
2. only then apply outputs (lock relay, fan, buzzer, LEDs), then hand the events to
   the uplink and republish. (A policy is persisted before its commit: see flush.)

If the commit fails, nothing is applied and the batch is retried: no output ever
happens without its durable record (the write-ahead rule).
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.clock import Clock
from agent.outbox import Draft, Outbox
from agent.wire import Envelope
from rules.cabinet import CabinetRules
from rules.effects import (
    CancelTimer,
    Effect,
    Emit,
    OutputName,
    PersistPolicy,
    Republish,
    SetOutput,
    StartTimer,
)
from rules.inputs import AnyInput, TimerFired

log = structlog.get_logger("core")

MAX_BATCH = 256  # inputs per commit: bounds the delay of the first output in a burst


def _noop(*_: Any) -> None:
    return None


@dataclass
class CoreHooks:
    """Where effects leave the core, all called from the core thread after the commit."""

    apply_output: Callable[[OutputName, bool], None] = _noop
    committed: Callable[[list[Envelope]], None] = _noop
    republish: Callable[[int, int], None] = _noop
    persist_policy: Callable[[dict[str, Any], int], None] = _noop
    beat: Callable[[str], None] = _noop
    idle: Callable[[], None] = _noop  # once per loop turn, core thread: read rule state here
    clock_ok: Callable[[], bool] = field(default=lambda: True)


class Core:
    def __init__(
        self, rules: CabinetRules, outbox: Outbox, clock: Clock, hooks: CoreHooks | None = None
    ):
        self.rules = rules
        self.outbox = outbox
        self.clock = clock
        self.hooks = hooks or CoreHooks()
        self.inbox: queue.SimpleQueue[AnyInput] = queue.SimpleQueue()
        self._timers: dict[str, int] = {}  # name -> due mono ms (one timer per name)
        self._heap: list[tuple[int, int, str]] = []
        self._order = 0
        self._pending_drafts: list[Draft] = []
        self._pending_actions: list[Effect] = []
        self.errors = 0  # reported in status.json (counters)
        self.committed_events = 0

    # --- feeding -------------------------------------------------------------------------

    def post(self, item: AnyInput) -> None:
        """Thread-safe: drivers and the downlink call this."""
        self.inbox.put(item)

    def process(self, items: Sequence[AnyInput]) -> list[Envelope]:
        """Step the rules for each input, then commit and apply. Core thread only."""
        for item in items:
            self._step(item)
        return self.flush()

    def fire_due(self) -> list[Envelope]:
        """Fire every timer that is due now, in due order, then commit and apply."""
        now = self.clock.now().mono_ms
        while self._heap and self._heap[0][0] <= now:
            due, _, name = heapq.heappop(self._heap)
            if self._timers.get(name) != due:
                continue  # cancelled or restarted since
            del self._timers[name]
            self._step(TimerFired(name))
        return self.flush()

    def next_due(self) -> int | None:
        while self._heap and self._timers.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    # --- the live loop -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve the inbox and timers until `stop` is set or the rules have stopped."""
        while not stop.is_set():
            due = self.next_due()
            wait = 1.0 if due is None else min(1.0, self.clock.seconds_until(due))
            batch: list[AnyInput] = []
            try:
                batch.append(self.inbox.get(timeout=wait))
                while len(batch) < MAX_BATCH:
                    batch.append(self.inbox.get_nowait())
            except queue.Empty:
                pass
            self.process(batch)
            self.fire_due()
            self.hooks.beat("core")
            self._call(self.hooks.idle)
            if self.rules.stopped and not self._pending_drafts:
                return

    # --- internals -----------------------------------------------------------------------

    def _step(self, item: AnyInput) -> None:
        now = self.clock.now()
        try:
            effects = self.rules.step(item, now)
        except Exception:
            # A bug in the rules must not take the cabinet down; outputs stay as they
            # were (the relay is only ever energised by a committed grant).
            self.errors += 1
            log.exception("rules.step_failed", input=type(item).__name__)
            return
        clock_ok = self.hooks.clock_ok()
        for effect in effects:
            if isinstance(effect, Emit):
                self._pending_drafts.append(
                    Draft(effect.type, effect.sev, effect.data, now.wall_ms, now.mono_ms, clock_ok)
                )
            elif isinstance(effect, StartTimer):
                self._timers[effect.name] = effect.at_ms
                self._order += 1
                heapq.heappush(self._heap, (effect.at_ms, self._order, effect.name))
            elif isinstance(effect, CancelTimer):
                self._timers.pop(effect.name, None)
            else:
                self._pending_actions.append(effect)

    def flush(self) -> list[Envelope]:
        envelopes: list[Envelope] = []
        # A policy is written to disk before `policy.applied` is committed: if power
        # fails in between, the cabinet restarts under the new policy and records it
        # (source "startup"), rather than holding a record of a policy it lost.
        for action in self._pending_actions:
            if isinstance(action, PersistPolicy) and not action.persisted:
                self._call(self.hooks.persist_policy, action.document, action.version)
                action.persisted = True
        if self._pending_drafts:
            try:
                envelopes = self.outbox.append_batch(self._pending_drafts)
            except Exception:
                # Disk full or I/O error: keep everything pending and apply nothing.
                self.errors += 1
                log.exception("outbox.commit_failed", pending=len(self._pending_drafts))
                time.sleep(0.1)
                return []
            self._pending_drafts = []
            self.committed_events += len(envelopes)
        self.hooks.beat("outbox")
        actions, self._pending_actions = self._pending_actions, []
        # Outputs before the uplink hears of the batch: `committed` wakes the uplink
        # thread, which then competes for the GIL with the relay and fan calls; this
        # way a publish waits for a few pin writes, not the relay for a publish.
        for action in actions:
            if isinstance(action, SetOutput):
                self._call(self.hooks.apply_output, action.output, action.on)
        if envelopes:
            self._call(self.hooks.committed, envelopes)
        for action in actions:
            if isinstance(action, Republish):
                self._call(self.hooks.republish, action.from_seq, action.to_seq)
        return envelopes

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self.errors += 1
            log.exception("core.hook_failed", hook=getattr(fn, "__name__", repr(fn)))
