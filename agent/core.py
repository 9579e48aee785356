"""The core: the one thread that owns rule state and the outbox's write side.

Inputs arrive on the inbox from drivers and the downlink; due timers are fed back as
`TimerFired`. For each batch the core steps the rules, then performs the effects in the
only order that is safe:

1. append every emitted event to the outbox and commit (one transaction: group commit),
   together with the rules' durable state as it stands after the batch (docs/rules.md,
   "The cabinet remembers"), so that after a power cut the state and the record always agree;
2. only then apply outputs (lock relay, fan, buzzer, LEDs), then hand the events to
   the uplink and republish. (A policy is persisted before its commit: see flush.)

If the commit fails, nothing is applied and the batch is retried: no output ever
happens without its durable record (the write-ahead rule).
"""

from __future__ import annotations

import heapq
import json
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.clock import Clock
from agent.outbox import Draft, Outbox
from agent.wire import Envelope, canonical
from rules import durable
from rules.cabinet import CabinetRules
from rules.effects import (
    CancelTimer,
    Effect,
    Emit,
    Instant,
    OutputName,
    PersistPolicy,
    Republish,
    SetOutput,
    StartTimer,
)
from rules.inputs import AnyInput, TimerFired
from rules.timers import TimerKey

log = structlog.get_logger("core")

STATE_KEY, POLICY_KEY = "rules_state", "rules_policy"  # outbox meta keys
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


class StateEncoder:
    """The rules' durable state as the outbox stores it: canonical JSON in two parts.

    The policy is most of the bytes (2 KB of the example's 2.2 KB) and changes a few
    times a year, so its part is encoded again only when the rules hold another policy
    object (policies are immutable); the rest, a few hundred bytes, at every commit.
    """

    def __init__(self) -> None:
        self._policy: object = None
        self._policy_bytes = b"null"

    def encode(self, rules: CabinetRules, now: Instant) -> dict[str, bytes]:
        if rules.policy is not self._policy:
            self._policy = rules.policy
            policy = durable.policy_state(rules.policy)
            self._policy_bytes = b"null" if policy is None else canonical(policy)
        return {
            STATE_KEY: canonical(durable.to_state(rules, now, with_policy=False)),
            POLICY_KEY: self._policy_bytes,
        }


def saved_state(outbox: Outbox) -> dict[str, Any] | None:
    """The durable state committed last, or None on a first start."""
    parts = outbox.saved_state
    if STATE_KEY not in parts:
        return None
    try:
        state = json.loads(parts[STATE_KEY])
        state["policy"] = json.loads(parts.get(POLICY_KEY, b"null"))
    except (ValueError, TypeError):
        log.error("core.state_unreadable")
        return {"format": None}  # the rules start without it and record a system.warning
    return state if isinstance(state, dict) else {"format": None}


class Core:
    def __init__(
        self, rules: CabinetRules, outbox: Outbox, clock: Clock, hooks: CoreHooks | None = None
    ):
        self.rules = rules
        self.outbox = outbox
        self.clock = clock
        self.hooks = hooks or CoreHooks()
        self.inbox: queue.SimpleQueue[AnyInput] = queue.SimpleQueue()
        self._timers: dict[TimerKey, int] = {}  # key -> due mono ms (one timer per key)
        self._heap: list[tuple[int, int, TimerKey]] = []
        self._order = 0
        self._pending_drafts: list[Draft] = []
        self._pending_actions: list[Effect] = []
        self._state = StateEncoder()
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
            due, _, key = heapq.heappop(self._heap)
            if self._timers.get(key) != due:
                continue  # cancelled or restarted since
            del self._timers[key]
            self._step(TimerFired(key))
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
                self._timers[effect.key] = effect.at_ms
                self._order += 1
                heapq.heappush(self._heap, (effect.at_ms, self._order, effect.key))
            elif isinstance(effect, CancelTimer):
                self._timers.pop(effect.key, None)
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
                state = self._state.encode(self.rules, self.clock.now())
                envelopes = self.outbox.append_batch(self._pending_drafts, state=state)
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
