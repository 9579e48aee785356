"""A cabinet on a virtual clock: the real rules, core and outbox, driven by a test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.clock import VirtualClock
from agent.core import Core, CoreHooks, saved_state
from agent.outbox import Outbox
from agent.wire import Envelope, SigningKey
from config.loading import load_model
from config.policy import Policy
from drivers.scenario import command_input
from rules import inputs as i
from rules.cabinet import CabinetRules

ROOT = Path(__file__).resolve().parents[2]
START_MS = 1_795_338_000_000  # 2026-11-22T09:00:00Z
KEEPER, USER, KEEPER2, SUSPENDED, EXPIRED = (
    "04A1B2C3D4E5F6",
    "04FFEEDDCCBBAA",
    "04112233445566",
    "04DEADBEEF0001",
    "04CAFE00000005",
)
USER_SECOND_CARD = "04FFEEDDCCBB01"
NaCN_SLOT, NaCN_GROSS = 3, 682_000


def example_policy(**sections: dict[str, Any]) -> Policy:
    """examples/policy.toml with some sections' fields overridden."""
    base = load_model(Policy, ROOT / "examples" / "policy.toml")
    doc = base.model_dump(by_alias=True)
    for name, fields in sections.items():
        if isinstance(doc.get(name), dict):
            doc[name].update(fields)
        else:
            doc[name] = fields
    return Policy.model_validate(doc)


class Cabinet:
    def __init__(
        self,
        tmp: Path,
        policy: Policy | None = None,
        device: str = "cab-chem-0042",
        scales_report: bool = False,
    ):
        # With scales_report the slot scales repeat their last weight every second, like
        # real scales (and the simulator) do, so long waits do not read as silent sensors.
        self.scales: dict[int, int] | None = {} if scales_report else None
        self._next_report = 0
        self.clock = VirtualClock(START_MS)
        self.path, self.device, self.key = tmp / "outbox.db", device, SigningKey.generate()
        self.outbox = Outbox(self.path, device, self.key)
        self.envelopes: list[Envelope] = []
        self.output_log: list[tuple[str, bool]] = []
        self._boot()
        if policy is not None:
            self.core.process([i.PolicyLoaded(policy, None, "file")])

    def _boot(self) -> None:
        self.rules = CabinetRules(self.device, "test")
        hooks = CoreHooks(
            apply_output=lambda name, on: self.output_log.append((name, on)),
            committed=self.envelopes.extend,
        )
        self.core = Core(self.rules, self.outbox, self.clock, hooks)
        saved, resumed = saved_state(self.outbox), self.outbox.resumed_from_seq
        self.core.process([i.Started("test", self.outbox.boot, resumed, saved)])

    def restart(self) -> Cabinet:
        """A power cut now: timers and uncommitted state are lost, the outbox and the
        state committed with it stay; the rules resume from that state (boot + 1)."""
        self.outbox.close()
        self.outbox = Outbox(self.path, self.device, self.key)
        self._boot()
        return self

    # time ----------------------------------------------------------------------------
    def at(self, seconds: float) -> Cabinet:
        """Move the virtual clock to `seconds` after start, firing timers on the way."""
        target = round(seconds * 1000)
        while True:
            due = self.core.next_due()
            report = self._next_report if self.scales is not None else None
            nxt = min((t for t in (due, report) if t is not None), default=None)
            if nxt is None or nxt > target:
                break
            self.clock.set(max(nxt, self.clock.now().mono_ms))
            if due == nxt:
                self.core.fire_due()
            else:
                assert self.scales is not None
                self.core.process([i.WeightReading(s, mg) for s, mg in sorted(self.scales.items())])
                self._next_report = nxt + 1000
        self.clock.set(target)
        return self

    # inputs ----------------------------------------------------------------------------
    def feed(self, *items: i.AnyInput) -> Cabinet:
        self.core.process(list(items))
        return self

    def badge(self, reader: str, uid: str) -> Cabinet:
        return self.feed(i.Badge(reader, uid))  # type: ignore[arg-type]

    def door(self, state: str) -> Cabinet:
        return self.feed(i.DoorChanged(state == "open"))

    def weight(self, slot: int, mg: int) -> Cabinet:
        if self.scales is not None:
            self.scales[slot] = mg
        return self.feed(i.WeightReading(slot, mg))

    def command(self, name: str, **args: Any) -> Cabinet:
        return self.feed(command_input(name, args, f"n-{len(self.envelopes)}"))

    def open_with_pair(self, first: str = KEEPER, second: str = USER) -> Cabinet:
        return self.badge("A", first).badge("B", second)

    # observations ----------------------------------------------------------------------
    def events(self, *types: str) -> list[dict[str, Any]]:
        all_ = [json.loads(e.payload) for e in self.envelopes]
        return [e for e in all_ if not types or e["type"] in types]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events()]

    def data(self, event_type: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events(event_type)]

    def denials(self) -> list[str]:
        return [d["reason"] for d in self.data("access.denied")]

    def alarms_raised(self) -> list[str]:
        return [d["kind"] for d in self.data("alarm.raised")]

    def alarms_cleared(self) -> list[str]:
        return [d["kind"] for d in self.data("alarm.cleared")]

    @property
    def relay(self) -> bool:
        return self.rules.outputs["lock"]

    def output(self, name: str) -> bool:
        return self.rules.outputs[name]  # type: ignore[index]


def alarm_condition(data: dict[str, Any]) -> tuple[object, ...]:
    """What an alarm is about: the record must never hold two open alarms for it."""
    fields = ("kind", "slot", "container", "sensor", "reader", "detail")
    # One per session: a mismatch of an approved amount, a breach of the tap-out.
    per_session = data["kind"] in ("mass_mismatch", "two_person_breach")
    session = data.get("session") if per_session else None
    return (*(data.get(f) for f in fields), session)
