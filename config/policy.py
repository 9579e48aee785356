"""The policy (docs/rules.md): who may open which cabinet, what is in it, env thresholds.

Written by people as TOML, signed by `cabinetctl policy sign`, enforced offline by the
agent. Numbers are integers only, so the signed JSON is canonical in every language.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

# operator: centre duty (ack, snapshot, resend); an operator alone never opens a cabinet.
Role = Literal["keeper", "user", "safety_officer", "operator"]
OPENING_ROLES = frozenset({"keeper", "user", "safety_officer"})
PairRule = Literal["any-two", "keeper+any", "two-keepers"]
ContainerClass = Literal["highly_toxic", "explosive_precursor", "other"]

NonNeg = Annotated[StrictInt, Field(ge=0)]
Positive = Annotated[StrictInt, Field(gt=0)]
CardUid = Annotated[str, Field(pattern=r"^[0-9A-F]{8,20}$")]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class _Strict(BaseModel):
    # Unknown keys are refused: a misspelt `pair_windows_s` must not silently default.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _utc_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("timestamps need a timezone, e.g. 2026-01-01T00:00:00Z")
    return int(value.astimezone(UTC).timestamp() * 1000)


class AccessPolicy(_Strict):
    pair: PairRule = "keeper+any"
    pair_window_s: Positive = 30
    distinct_readers: StrictBool = True
    unlock_s: Positive = 10
    door_held_s: Positive = 120
    lockout_after: Positive = 5
    lockout_window_s: Positive = 300
    lockout_s: Positive = 300
    remote_second: StrictBool = False
    tap_out_s: NonNeg = 0  # > 0: both persons badge again within this after the door closes


class Person(_Strict):
    id: Id
    name: str = ""
    roles: tuple[Role, ...] = Field(min_length=1)
    cards: tuple[CardUid, ...] = Field(min_length=1)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    suspended: StrictBool = False
    cabinets: tuple[str, ...] = ("*",)  # which cabinets this person may open

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None:
            _utc_ms(value)
        return value

    def valid_at(self, now_ms: int) -> bool:
        if self.suspended:
            return False
        if self.valid_from is not None and now_ms < _utc_ms(self.valid_from):
            return False
        return not (self.valid_until is not None and now_ms >= _utc_ms(self.valid_until))

    def may_open(self, cabinet: str) -> bool:
        listed = "*" in self.cabinets or cabinet in self.cabinets
        return listed and bool(OPENING_ROLES & set(self.roles))

    @property
    def is_keeper(self) -> bool:
        return "keeper" in self.roles


class InventoryPolicy(_Strict):
    tolerance_mg: NonNeg = 2000
    tolerance_pct: NonNeg = 1
    settle_s: NonNeg = 5
    return_within_s: Positive = 14400


class Container(_Strict):
    id: Id
    slot: NonNeg
    name: str = ""
    cas: str = ""
    container_class: ContainerClass = Field("other", alias="class")
    tare_mg: NonNeg
    mass_mg: NonNeg

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EnvironmentPolicy(_Strict):
    voc_warn_ppb: NonNeg = 5000
    voc_alarm_ppb: Positive = 10000
    voc_clear_ppb: NonNeg = 4000
    voc_hold_s: NonNeg = 10
    sensor_stale_s: Positive = 30
    fan_on_door_open: StrictBool = True
    voc_max_ppb: Positive = 1_000_000  # beyond the sensor's physical range -> sensor_fault
    reading_period_s: Positive = 60  # env.reading telemetry period

    @model_validator(mode="after")
    def _ordered(self) -> EnvironmentPolicy:
        if not self.voc_clear_ppb < self.voc_alarm_ppb:
            raise ValueError("voc_clear_ppb must be below voc_alarm_ppb (hysteresis)")
        if not self.voc_warn_ppb <= self.voc_alarm_ppb:
            raise ValueError("voc_warn_ppb must not exceed voc_alarm_ppb")
        return self


class Policy(_Strict):
    version: Positive
    issued_at: datetime
    cabinet: str = Field(min_length=1)
    access: AccessPolicy = AccessPolicy()
    person: tuple[Person, ...] = ()
    inventory: InventoryPolicy = InventoryPolicy()
    container: tuple[Container, ...] = ()
    environment: EnvironmentPolicy = EnvironmentPolicy()

    @field_validator("issued_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        _utc_ms(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        seen_people: set[str] = set()
        card_owner: dict[str, str] = {}
        for index, person in enumerate(self.person):
            if person.id in seen_people:
                raise ValueError(f"person[{index}].id {person.id!r} is a duplicate person id")
            seen_people.add(person.id)
            for card in person.cards:
                if card in card_owner and card_owner[card] != person.id:
                    raise ValueError(
                        f"person[{index}].cards: card {card[-4:]!r} (last 4) is also on "
                        f"{card_owner[card]!r}"
                    )
                card_owner[card] = person.id
        ids: set[str] = set()
        slots: dict[int, str] = {}
        for index, box in enumerate(self.container):
            if box.id in ids:
                raise ValueError(f"container[{index}].id {box.id!r} is a duplicate container id")
            ids.add(box.id)
            if box.slot in slots:
                raise ValueError(
                    f"container[{index}].slot {box.slot} already holds {slots[box.slot]!r}"
                )
            slots[box.slot] = box.id
        return self

    def applies_to(self, device: str) -> bool:
        return self.cabinet in ("*", device)

    def person_by_card(self, uid: str) -> Person | None:
        for person in self.person:
            if uid in person.cards:
                return person
        return None

    def person_by_id(self, person_id: str) -> Person | None:
        return next((p for p in self.person if p.id == person_id), None)

    def container_in_slot(self, slot: int) -> Container | None:
        return next((c for c in self.container if c.slot == slot), None)

    def container_by_id(self, container_id: str) -> Container | None:
        return next((c for c in self.container if c.id == container_id), None)

    def to_document(self) -> dict[str, object]:
        """The JSON form that is signed: integers and strings only, RFC 3339 UTC times."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
