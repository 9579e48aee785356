"""The simulated cabinet: door, two readers, slot scales, VOC, leak and tamper in software.

It produces exactly the inputs the real drivers produce, so the demo and `replay`
exercise the real core, rules and outbox. Its sensors keep reporting while time passes
(the scales read `tare + mass` of each container until a scenario line changes them),
so silence — and `sensor_fault` — only happens when a scenario says `silence`.

`SimulatedCabinet` is sans-I/O (it is driven by a clock, for replay); `SimDriver` plays
a scenario in real time (times `speed`) on a thread, for `cabinet-agent run`.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import structlog

from config.policy import Policy
from drivers.base import Post
from drivers.scenario import RestartLine, ResumeLine, Scenario, SilenceLine, SimLine
from rules import inputs as i
from rules.effects import Instant, OutputName

log = structlog.get_logger("drivers.sim")

REPORT_PERIOD_MS = 1000  # how often the simulated scales and VOC sensor report


class Clock(Protocol):
    """The part of agent.clock's clocks the simulator needs (drivers do not import agent)."""

    def now(self) -> Instant: ...

    def seconds_until(self, mono_ms: int) -> float: ...


class SimulatedCabinet:
    def __init__(self, policy: Policy | None) -> None:
        self.weights: dict[int, int] = {}
        if policy is not None:
            for box in policy.container:
                self.weights[box.slot] = box.tare_mg + box.mass_mg
        self.voc_ppb = 0
        self.silenced: set[str] = set()
        self.outputs: dict[str, bool] = {}
        self.output_log: list[tuple[str, bool]] = []
        self._levels_reported = False
        self.door_open = False
        self.leak_wet = False
        self.tamper_open = False

    def apply(self, output: OutputName, on: bool) -> None:
        self.outputs[output] = on
        self.output_log.append((output, on))

    # --- physical state: hardware keeps it across a restart of the agent --------------

    def physical(self) -> dict[str, Any]:
        return {
            "weights": {str(k): v for k, v in sorted(self.weights.items())},
            "voc_ppb": self.voc_ppb,
            "door_open": self.door_open,
            "leak_wet": self.leak_wet,
            "tamper_open": self.tamper_open,
            "silenced": sorted(self.silenced),
        }

    def load_physical(self, saved: dict[str, Any]) -> None:
        self.weights = {int(k): int(v) for k, v in saved["weights"].items()}
        self.voc_ppb = int(saved["voc_ppb"])
        self.door_open = bool(saved["door_open"])
        self.leak_wet = bool(saved["leak_wet"])
        self.tamper_open = bool(saved["tamper_open"])
        self.silenced = {str(s) for s in saved["silenced"]}

    def power_cycle(self) -> None:
        """The agent restarts: the world stays, the switches' levels are reported anew."""
        self._levels_reported = False

    def scripted(self, item: i.AnyInput | SimLine) -> i.AnyInput | None:
        """Take one scenario input: update the simulated world, return what the rules see."""
        if isinstance(item, RestartLine):
            return None  # only `replay` restarts the agent; a live run ignores the line
        if isinstance(item, SilenceLine):
            self.silenced.add(item.sensor)
            return None
        if isinstance(item, ResumeLine):
            self.silenced.discard(item.sensor)
            return None
        if isinstance(item, i.DoorChanged):
            self.door_open = item.open
        elif isinstance(item, i.LeakChanged):
            self.leak_wet = item.wet
        elif isinstance(item, i.TamperChanged):
            self.tamper_open = item.open
        if isinstance(item, i.WeightReading):
            self.weights[item.slot] = item.mg
            if f"scale:{item.slot}" in self.silenced:
                return None
        if isinstance(item, i.VocReading):
            self.voc_ppb = item.ppb
            if "voc" in self.silenced:
                return None
        return item

    def report(self) -> list[i.AnyInput]:
        """What the sensors say now (called every REPORT_PERIOD_MS of simulated time)."""
        out: list[i.AnyInput] = []
        if not self._levels_reported:
            # Like the GPIO driver, report the switches' levels once at start.
            self._levels_reported = True
            out += [
                i.DoorChanged(self.door_open),
                i.LeakChanged(self.leak_wet),
                i.TamperChanged(self.tamper_open),
            ]
        out += [
            i.WeightReading(slot, mg)
            for slot, mg in sorted(self.weights.items())
            if f"scale:{slot}" not in self.silenced
        ]
        if "voc" not in self.silenced:
            out.append(i.VocReading(self.voc_ppb))
        return out


class SimDriver:
    """The simulated cabinet as a live driver: plays a scenario on `clock`'s time."""

    name = "sim"

    def __init__(
        self,
        policy: Policy | None,
        scenario: Scenario | None,
        clock: Clock,
        state_file: Path | None = None,
    ) -> None:
        self.cabinet = SimulatedCabinet(policy)
        # Where the simulated world is kept, so a restarted agent finds the scales, door
        # and sensors as it left them, as real hardware would (docs/rules.md, "The cabinet
        # remembers").
        self.state_file = state_file
        if state_file is not None:
            self._load(state_file)
        self.scenario = scenario
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished = threading.Event()

    def start(self, post: Post) -> None:
        self._thread = threading.Thread(target=self._play, args=(post,), name="sim", daemon=True)
        self._thread.start()

    def outputs(self) -> frozenset[OutputName]:
        return frozenset({"lock", "fan", "buzzer", "led_green", "led_red"})

    def apply(self, output: OutputName, on: bool) -> None:
        self.cabinet.apply(output, on)
        log.info("sim.output", output=output, on=on)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for name in self.outputs():
            self.cabinet.apply(name, False)

    def _play(self, post: Post) -> None:
        steps = list(self.scenario.steps) if self.scenario else []
        next_report = 0
        while not self._stop.is_set():
            now = self.clock.now().mono_ms
            due_now = 0
            while due_now < len(steps) and steps[due_now].at_ms <= now:
                due_now += 1
            if due_now:
                # Every line that is due changes the world, the world is saved once, and
                # only then does anyone see the changes: a burst costs one save, not one
                # per line (it was what limited the `burst` benchmark, not the agent).
                seen = [self.cabinet.scripted(step.input) for step in steps[:due_now]]
                del steps[:due_now]
                self._save()
                for item in seen:
                    if item is not None:
                        post(item)
            if not steps and self.scenario is not None:
                self.finished.set()
            if now >= next_report:
                for reading in self.cabinet.report():
                    post(reading)
                next_report = now + REPORT_PERIOD_MS
            due = min([next_report] + ([steps[0].at_ms] if steps else []))
            self._stop.wait(min(0.5, self.clock.seconds_until(due)) or 0.005)

    def _load(self, path: Path) -> None:
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("sim.state_unreadable", path=str(path), error=type(exc).__name__)
            return
        try:
            self.cabinet.load_physical(saved)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("sim.state_unreadable", path=str(path), error=type(exc).__name__)

    def _save(self) -> None:
        if self.state_file is None:
            return
        temp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        try:
            # No fsync: the simulated world only has to survive the agent's process.
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(self.cabinet.physical(), out)
            os.replace(temp, self.state_file)
        except OSError as exc:
            log.warning("sim.state_not_saved", error=str(exc))

    def describe(self) -> dict[str, Any]:
        return {"weights": dict(self.cabinet.weights), "voc_ppb": self.cabinet.voc_ppb}
