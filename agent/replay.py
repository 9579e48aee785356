"""`cabinet-agent replay`: the real core, rules and outbox on a virtual clock (§4.6).

Three streams are merged in time order: the scenario's lines, the simulated sensors'
periodic reports and the rules' timers. A timer fires at its own due time, not at the
next input; at equal times timers go first (they were due "by" then), then the
scenario line, then the sensor reports.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from agent import __version__
from agent.clock import VirtualClock
from agent.core import Core, CoreHooks
from agent.outbox import Outbox
from agent.wire import Envelope, SigningKey
from config.policy import Policy
from drivers.scenario import Scenario
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
        outbox = Outbox(directory / "outbox.db", device, key)
        try:
            return _run(scenario, policy, outbox, device, emit)
        finally:
            outbox.close()


def _run(
    scenario: Scenario,
    policy: Policy,
    outbox: Outbox,
    device: str,
    emit: Callable[[Envelope], object],
) -> SimulatedCabinet:
    clock = VirtualClock(scenario.start_wall_ms)
    cabinet = SimulatedCabinet(policy)
    rules = CabinetRules(device, __version__)

    def committed(envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            emit(envelope)

    core = Core(rules, outbox, clock, CoreHooks(apply_output=cabinet.apply, committed=committed))
    core.process([Started(__version__, outbox.boot), PolicyLoaded(policy, None, "file")])
    steps = list(scenario.steps)
    next_report = 0
    end = scenario.end_ms
    while True:
        due = core.next_due()
        candidates = [
            t for t in (due, steps[0].at_ms if steps else None, next_report) if t is not None
        ]
        at = min(candidates)
        if at > end:
            break
        clock.set(at)
        if due is not None and due == at:
            core.fire_due()
            continue
        if steps and steps[0].at_ms == at:
            item = cabinet.scripted(steps.pop(0).input)
            if item is not None:
                core.process([item])
            continue
        core.process(cabinet.report())
        next_report = at + REPORT_PERIOD_MS
    return cabinet
