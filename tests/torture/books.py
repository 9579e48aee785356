"""An independent fold of a cabinet's record: the books, the open alarms, and the checks
that a restart at any instant changed nothing the cabinet knew (docs/rules.md, "The cabinet
remembers").

It reads only the verified events and the policy (for the opening books and tares), not
the agent's own state, so a restart that forgot or re-derived something differently
shows up as a record that contradicts itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from config.policy import Policy
from tests.rules.harness import alarm_condition

QUIET_START_S = 12


def books_load(seconds: int) -> str:
    """Withdrawals, returns and a container taken out and brought back, by two persons.

    Every 10 s a two-person session. Slot 3 alternates between its full weight and 10 g
    less (a withdrawal, then a return); slot 4's bottle leaves in one session and comes
    back in the next. All weights are absolute, so the scene can start again from t=0
    after a restart and still describe one consistent world. The first session comes
    after QUIET_START_S: a session that was settling when the agent died is reconciled
    after the restart (one settle period, or two if the scales were still moving), and
    badges before that are refused as the cabinet is busy.
    """
    keeper, user = "04A1B2C3D4E5F6", "04FFEEDDCCBBAA"
    lines: list[tuple[float, dict[str, object]]] = []
    for cycle in range(max(1, seconds // 10)):
        t = QUIET_START_S + cycle * 10.0
        slot3 = 682_000 - 10_000 if cycle % 2 == 0 else 682_000
        slot4 = 0 if cycle % 4 == 1 else 400_000
        lines += [
            (t + 0.0, {"input": "badge", "reader": "A", "uid": keeper}),
            (t + 0.4, {"input": "badge", "reader": "B", "uid": user}),
            (t + 0.8, {"input": "door", "state": "open"}),
            (t + 1.2, {"input": "weight", "slot": 3, "mg": slot3}),
            (t + 1.4, {"input": "weight", "slot": 4, "mg": slot4}),
            (t + 2.0, {"input": "door", "state": "closed"}),
        ]
    return "".join(json.dumps({"t": round(t, 3), **line}) + "\n" for t, line in lines)


@dataclass
class Fold:
    policy: Policy
    books: dict[str, int] = field(default_factory=dict)
    present: dict[str, bool] = field(default_factory=dict)
    open_alarms: dict[str, tuple[object, ...]] = field(default_factory=dict)
    seq: int = 0

    def __post_init__(self) -> None:
        for box in self.policy.container:
            self.books[box.id] = box.mass_mg
            self.present[box.id] = True

    def expected_gross(self, container: str) -> int:
        box = self.policy.container_by_id(container)
        assert box is not None
        return box.tare_mg + self.books[container] if self.present[container] else 0

    def feed(self, events: list[dict[str, Any]], where: str) -> None:
        """Fold events after those already folded; assert the record agrees with itself."""
        for event in events:
            if event["seq"] <= self.seq:
                continue
            assert event["seq"] == self.seq + 1, f"{where}: gap before seq {event['seq']}"
            self.seq = event["seq"]
            self._one(event, f"{where}, seq {event['seq']} ({event['type']})")

    def _one(self, event: dict[str, Any], where: str) -> None:
        kind, data = event["type"], event["data"]
        if kind in ("inventory.withdrawal", "inventory.return"):
            sign = -1 if kind == "inventory.withdrawal" else 1
            self.books[data["container"]] += sign * data["amount_mg"]
            assert data["book_mg"] == self.books[data["container"]], f"{where}: books differ"
            assert len(set(data["persons"])) == 2, f"{where}: not two persons"
        elif kind == "inventory.adjusted" and data["container"] is not None:
            assert data["book_before_mg"] == self.books[data["container"]], f"{where}: before"
            self.books[data["container"]] += data["delta_mg"]
            assert data["book_after_mg"] == self.books[data["container"]], f"{where}: after"
        elif kind == "inventory.received":
            self.books[data["container"]] = data["book_mg"]
            self.present[data["container"]] = True
        elif kind == "inventory.disposed":
            assert data["book_mg"] == self.books.pop(data["container"]), f"{where}: disposed"
            self.present.pop(data["container"])
        elif kind == "inventory.removed":
            assert self.present[data["container"]], f"{where}: removed twice"
            self.present[data["container"]] = False
        elif kind == "inventory.restored":
            assert not self.present[data["container"]], f"{where}: restored while present"
            self.present[data["container"]] = True
        elif kind == "alarm.raised":
            about = alarm_condition(data)
            assert about not in self.open_alarms.values(), f"{where}: duplicate alarm {data}"
            self.open_alarms[data["alarm"]] = about
            if data["kind"] == "mass_unexplained":
                # The rules' expectation must be the books the record implies.
                expected = self.expected_gross(data["container"])
                assert data["expected_mg"] == expected, f"{where}: alarm against other books"
        elif kind == "alarm.cleared":
            assert data["alarm"] in self.open_alarms, f"{where}: cleared what is not open"
            del self.open_alarms[data["alarm"]]

    def open_kinds(self) -> list[tuple[object, ...]]:
        return sorted(self.open_alarms.values(), key=str)
