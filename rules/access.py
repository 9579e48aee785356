"""Two-person access (双人双锁): no single person can open the cabinet.

A badge resolves card → person through the policy, then passes these checks in order,
each a distinct `access.denied` reason: no_policy, unknown_card, not_authorized,
locked_out, door_open. The first valid badge opens a pair window; the second must be a
different person, on the other reader (if required), and the pair must satisfy the
policy's pair rule. Repeated denials lock every badge out for a while (brute force).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.policy import Person, Policy
from rules.alarms import AlarmBook
from rules.effects import CancelTimer, Effect, Emit, Instant, StartTimer

PAIR_TIMER = "pair"
LOCKOUT_TIMER = "lockout"

# Denials that look like someone trying cards; `door_open`, `no_policy` and `locked_out`
# are not counted (they say nothing about the card, and counting lockouts would extend
# a lockout for ever).
COUNTED = frozenset(
    {"unknown_card", "not_authorized", "same_person", "same_reader", "role_requirement"}
)


def mask_uid(uid: str) -> str:
    """Card UIDs never go out in full: keep the last 4 hex digits for tracing."""
    return "*" * max(len(uid) - 4, 0) + uid[-4:]


@dataclass(frozen=True)
class Pending:
    person: str
    reader: str
    expires_mono: int
    expires_wall: int


@dataclass(frozen=True)
class Grant:
    persons: tuple[str, str]
    readers: tuple[str, ...]
    mode: str  # "local" or "remote"
    approval: str | None = None  # nonce of the remote approval


APPROVER_ROLES = frozenset({"keeper", "safety_officer"})


def pair_allowed(rule: str, first: Person, second: Person) -> bool:
    if rule == "two-keepers":
        return first.is_keeper and second.is_keeper
    if rule == "keeper+any":
        return first.is_keeper or second.is_keeper
    return True  # any-two: two different authorised people


class AccessControl:
    def __init__(self) -> None:
        self.pending: Pending | None = None
        self._denials: list[int] = []  # mono ms of counted denials inside the window
        self.locked_until: int | None = None

    def badge(
        self,
        out: list[Effect],
        now: Instant,
        policy: Policy | None,
        device: str,
        reader: str,
        uid: str,
        busy: bool,
        alarms: AlarmBook,
    ) -> Grant | None:
        def deny(reason: str, person: Person | None = None) -> None:
            data: dict[str, Any] = {"reason": reason, "reader": reader}
            if person is None:
                data["uid"] = mask_uid(uid)
            else:
                data["person"] = person.id
            out.append(Emit("access.denied", "warning", data))
            if reason in COUNTED and policy is not None:
                self._count_denial(out, now, policy, alarms)

        if policy is None:
            deny("no_policy")
            return None
        person = policy.person_by_card(uid)
        if person is None:
            deny("unknown_card")
            return None
        if not person.valid_at(now.wall_ms) or not person.may_open(device):
            deny("not_authorized", person)
            return None
        if self.locked_until is not None:
            deny("locked_out", person)
            return None
        if busy:
            deny("door_open", person)
            return None
        rules = policy.access
        first = self.pending
        if first is None:
            if rules.pair == "two-keepers" and not person.is_keeper:
                deny("role_requirement", person)  # this pair could never be completed
                return None
            window = rules.pair_window_s * 1000
            self.pending = Pending(person.id, reader, now.mono_ms + window, now.wall_ms + window)
            out.append(
                Emit(
                    "access.pending",
                    "info",
                    {
                        "person": person.id,
                        "reader": reader,
                        "expires_at_ms": self.pending.expires_wall,
                    },
                )
            )
            out.append(StartTimer(PAIR_TIMER, self.pending.expires_mono))
            return None
        if person.id == first.person:
            deny("same_person", person)
            return None
        if rules.distinct_readers and reader == first.reader:
            deny("same_reader", person)
            return None
        first_person = policy.person_by_id(first.person)
        if first_person is None or not pair_allowed(rules.pair, first_person, person):
            deny("role_requirement", person)
            return None
        self.pending = None
        out.append(CancelTimer(PAIR_TIMER))
        return Grant((first.person, person.id), (first.reader, reader), "local")

    def approve_remote(
        self,
        out: list[Effect],
        now: Instant,
        policy: Policy | None,
        person_id: str,
        nonce: str,
        by: str,
    ) -> Grant | str:
        """A signed remote approval standing in for the second person; str = refusal reason.

        The approver is held to what a second badge would be: a valid person of the
        policy, not the pending person, whose pairing with the pending person satisfies
        the pair rule, and who holds keeper or safety_officer (DESIGN §4.5).
        """
        if policy is None:
            return "no_policy"
        if not policy.access.remote_second:
            return "remote_second_disabled"
        if self.locked_until is not None:
            return "locked_out"
        first = self.pending
        if first is None or first.person != person_id:
            return "not_pending"
        approver = policy.person_by_id(by)
        if approver is None:
            return "unknown_person"
        if by == first.person:
            return "same_person"
        if not approver.valid_at(now.wall_ms):
            return "not_authorized"
        first_person = policy.person_by_id(first.person)
        if (
            first_person is None
            or not APPROVER_ROLES & set(approver.roles)
            or not pair_allowed(policy.access.pair, first_person, approver)
        ):
            return "role_requirement"
        self.pending = None
        out.append(CancelTimer(PAIR_TIMER))
        return Grant((first.person, by), (first.reader,), "remote", nonce)

    def timer(self, out: list[Effect], now: Instant, name: str, alarms: AlarmBook) -> None:
        if (
            name == PAIR_TIMER
            and self.pending is not None
            and now.mono_ms >= self.pending.expires_mono
        ):
            out.append(Emit("access.expired", "info", {"person": self.pending.person}))
            self.pending = None
        elif (
            name == LOCKOUT_TIMER
            and self.locked_until is not None
            and now.mono_ms >= self.locked_until
        ):
            self.locked_until = None
            self._denials.clear()
            alarms.clear(out, "brute_force")

    def policy_changed(self, out: list[Effect], policy: Policy) -> None:
        # A pending badge was judged under the old policy: make the person badge again.
        if self.pending is not None:
            out.append(
                Emit(
                    "access.expired",
                    "info",
                    {"person": self.pending.person, "reason": "policy_changed"},
                )
            )
            out.append(CancelTimer(PAIR_TIMER))
            self.pending = None

    # --- durable state (deadlines on the wall clock: the monotonic one restarts) --------

    def to_state(self, now: Instant) -> dict[str, Any]:
        return {
            "denials_wall_ms": [now.wall_ms + t - now.mono_ms for t in self._denials],
            "locked_until_wall_ms": None
            if self.locked_until is None
            else now.wall_ms + self.locked_until - now.mono_ms,
        }

    def restore(self, out: list[Effect], now: Instant, state: dict[str, Any]) -> None:
        self._denials = [now.mono_ms + t - now.wall_ms for t in state["denials_wall_ms"]]
        until = state["locked_until_wall_ms"]
        if until is not None:
            # A lockout that ran out while the cabinet was off ends at once (timer due).
            self.locked_until = now.mono_ms + until - now.wall_ms
            out.append(StartTimer(LOCKOUT_TIMER, self.locked_until))

    def _count_denial(
        self, out: list[Effect], now: Instant, policy: Policy, alarms: AlarmBook
    ) -> None:
        rules = policy.access
        horizon = now.mono_ms - rules.lockout_window_s * 1000
        self._denials = [t for t in self._denials if t > horizon] + [now.mono_ms]
        if len(self._denials) < rules.lockout_after:
            return
        self.locked_until = now.mono_ms + rules.lockout_s * 1000
        alarms.raise_(
            out, now, "brute_force", denials=len(self._denials), lockout_s=rules.lockout_s
        )
        out.append(StartTimer(LOCKOUT_TIMER, self.locked_until))
        if self.pending is not None:
            out.append(
                Emit(
                    "access.expired",
                    "info",
                    {"person": self.pending.person, "reason": "locked_out"},
                )
            )
            out.append(CancelTimer(PAIR_TIMER))
            self.pending = None
