"""The rules alone on a virtual clock: `CabinetRules` and a timer heap, no outbox, no
signing. Property tests run here by the thousand; one integration run of the same
machine on the real core (tests/rules/harness.py) keeps this stand-in honest.

A restart keeps what the core would have committed: the durable state, as JSON.
"""

from __future__ import annotations

import heapq
import json
from typing import Any

from config.policy import Policy
from drivers.scenario import command_input
from rules import durable
from rules import inputs as i
from rules.cabinet import CabinetRules
from rules.effects import CancelTimer, Emit, Instant, StartTimer
from rules.timers import TimerKey
from tests.rules.harness import START_MS


class RulesOnly:
    def __init__(self, policy: Policy, device: str = "cab-chem-0042") -> None:
        self.device = device
        self.mono = 0
        self.boot = 0
        self.log: list[dict[str, Any]] = []
        self._state: str | None = None
        self._boot()
        self.feed(i.PolicyLoaded(policy, None, "file"))

    def _boot(self) -> None:
        self.boot += 1
        self.rules = CabinetRules(self.device, "test")
        self._timers: dict[TimerKey, int] = {}
        self._heap: list[tuple[int, int, TimerKey]] = []
        self._order = 0
        state = None if self._state is None else json.loads(self._state)
        self.feed(i.Started("test", self.boot, len(self.log), state))

    def restart(self) -> RulesOnly:
        self._boot()
        return self

    @property
    def now(self) -> Instant:
        return Instant(START_MS + self.mono, self.mono)

    # inputs and time -----------------------------------------------------------------
    def feed(self, *items: i.AnyInput) -> RulesOnly:
        for item in items:
            self._step(item)
        return self

    def _step(self, item: i.AnyInput) -> None:
        emitted = False
        for effect in self.rules.step(item, self.now):
            if isinstance(effect, Emit):
                emitted = True
                self.log.append(
                    {
                        "seq": len(self.log) + 1,
                        "boot": self.boot,
                        "ts": self.now.wall_ms,
                        "type": effect.type,
                        "data": json.loads(json.dumps(effect.data)),
                    }
                )
            elif isinstance(effect, StartTimer):
                self._timers[effect.key] = effect.at_ms
                self._order += 1
                heapq.heappush(self._heap, (effect.at_ms, self._order, effect.key))
            elif isinstance(effect, CancelTimer):
                self._timers.pop(effect.key, None)
        if emitted:  # what the core commits with those events
            self._state = json.dumps(durable.to_state(self.rules, self.now))

    def at(self, seconds: float) -> RulesOnly:
        target = round(seconds * 1000)
        while self._heap and self._heap[0][0] <= target:
            due, _, key = heapq.heappop(self._heap)
            if self._timers.get(key) != due:
                continue
            del self._timers[key]
            self.mono = max(due, self.mono)
            self._step(i.TimerFired(key))
        self.mono = max(target, self.mono)
        return self

    def badge(self, reader: str, uid: str) -> RulesOnly:
        return self.feed(i.Badge(reader, uid))  # type: ignore[arg-type]

    def door(self, state: str) -> RulesOnly:
        return self.feed(i.DoorChanged(state == "open"))

    def weight(self, slot: int, mg: int) -> RulesOnly:
        return self.feed(i.WeightReading(slot, mg))

    def command(self, name: str, **args: Any) -> RulesOnly:
        return self.feed(command_input(name, args, f"n-{len(self.log)}"))

    def events(self) -> list[dict[str, Any]]:
        return self.log
