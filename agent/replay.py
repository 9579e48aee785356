"""`cabinet-agent replay`: the real core, rules and outbox on a virtual clock (§4.6).

Three streams are merged in time order: the scenario's lines, the simulated sensors'
periodic reports and the rules' timers. A timer fires at its own due time, not at the
next input; at equal times timers go first (they were due "by" then), then the
scenario line, then the sensor reports.

A `restart` line is a power cut and restart at that instant (docs/rules.md, "The cabinet
remembers"): pending timers and everything not committed are lost, the outbox is opened
again (boot + 1) and the rules resume from the state committed with the last batch; the
simulated cabinet keeps its physical state. The `--policy` is applied at the first start
only: after a restart the cabinet enforces the policy its state holds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from agent import __version__
from agent.clock import VirtualClock
from agent.core import Core, CoreHooks, saved_state
from agent.outbox import Outbox
from agent.wire import Envelope, SigningKey
from config.policy import Policy
from drivers.scenario import RestartLine, Scenario
from drivers.sim import REPORT_PERIOD_MS, SimulatedCabinet
from rules.cabinet import CabinetRules
from rules.inputs import PolicyLoaded, Started


def replay(
    scenario: Scenario,
    policy: Policy,
    key: SigningKey,
    device: str,
    emit: Callable[[Envelope], object],
    state_dir: Path | None = None,
) -> SimulatedCabinet:
    """Run the scenario; call `emit` with each committed envelope in seq order."""
    with tempfile.TemporaryDirectory(prefix="cabinet-replay-") as tmp:
        directory = state_dir or Path(tmp)
        run = _Replay(scenario, policy, directory / "outbox.db", key, device, emit)
        try:
            return run.play(policy)
        finally:
            run.outbox.close()


class _Replay:
    def __init__(
        self,
        scenario: Scenario,
        policy: Policy,
        path: Path,
        key: SigningKey,
        device: str,
        emit: Callable[[Envelope], object],
    ) -> None:
        self.scenario, self.path, self.key, self.device, self.emit = (
            scenario,
            path,
            key,
            device,
            emit,
        )
        self.clock = VirtualClock(scenario.start_wall_ms)
        self.cabinet = SimulatedCabinet(policy)
        self.outbox = Outbox(path, device, key)
        self.core = self._boot()

    def _boot(self) -> Core:
        rules = CabinetRules(self.device, __version__)
        hooks = CoreHooks(apply_output=self.cabinet.apply, committed=self._committed)
        core = Core(rules, self.outbox, self.clock, hooks)
        started = Started(
            __version__, self.outbox.boot, self.outbox.resumed_from_seq, saved_state(self.outbox)
        )
        core.process([started])
        return core

    def _committed(self, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            self.emit(envelope)

    def _restart(self) -> None:
        self.outbox.close()
        self.outbox = Outbox(self.path, self.device, self.key)
        self.cabinet.power_cycle()
        self.core = self._boot()

    def play(self, policy: Policy) -> SimulatedCabinet:
        self.core.process([PolicyLoaded(policy, None, "file")])
        steps = list(self.scenario.steps)
        next_report = 0
        end = self.scenario.end_ms
        while True:
            due = self.core.next_due()
            candidates = [
                t for t in (due, steps[0].at_ms if steps else None, next_report) if t is not None
            ]
            at = min(candidates)
            if at > end:
                break
            self.clock.set(at)
            if due is not None and due == at:
                self.core.fire_due()
                continue
            if steps and steps[0].at_ms == at:
                line = steps.pop(0).input
                if isinstance(line, RestartLine):
                    self._restart()
                    continue
                item = self.cabinet.scripted(line)
                if item is not None:
                    self.core.process([item])
                continue
            self.core.process(self.cabinet.report())
            next_report = at + REPORT_PERIOD_MS
        return self.cabinet
