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
from rules.effects import Instant
from rules.step import Step
from rules.timers import Timer

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

    def badge(self, ctx: Step, device: str, reader: str, uid: str, busy: bool) -> Grant | None:
        policy, now = ctx.policy, ctx.now

        def deny(reason: str, person: Person | None = None) -> None:
            data: dict[str, Any] = {"reason": reason, "reader": reader}
            if person is None:
                data["uid"] = mask_uid(uid)
            else:
                data["person"] = person.id
            ctx.emit("access.denied", "warning", data)
            if reason in COUNTED and policy is not None:
                self._count_denial(ctx, policy)

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
            data = {"person": person.id, "reader": reader, "expires_at_ms": now.wall_ms + window}
            ctx.emit("access.pending", "info", data)
            ctx.start(Timer.PAIR, window)
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
        ctx.cancel(Timer.PAIR)
        return Grant((first.person, person.id), (first.reader, reader), "local")

    def approve_remote(self, ctx: Step, person_id: str, nonce: str, by: str) -> Grant | str:
        """A signed remote approval standing in for the second person; str = refusal reason.

        The approver is held to what a second badge would be: a valid person of the
        policy, not the pending person, whose pairing with the pending person satisfies
        the pair rule, and who holds keeper or safety_officer (docs/protocol.md, "Commands").
        """
        policy = ctx.policy
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
        if not approver.valid_at(ctx.now.wall_ms):
            return "not_authorized"
        first_person = policy.person_by_id(first.person)
        if (
            first_person is None
            or not APPROVER_ROLES & set(approver.roles)
            or not pair_allowed(policy.access.pair, first_person, approver)
        ):
            return "role_requirement"
        self.pending = None
        ctx.cancel(Timer.PAIR)
        return Grant((first.person, by), (first.reader,), "remote", nonce)

    def pair_window_ended(self, ctx: Step) -> None:
        if self.pending is not None and ctx.now.mono_ms >= self.pending.expires_mono:
            ctx.emit("access.expired", "info", {"person": self.pending.person})
            self.pending = None

    def lockout_ended(self, ctx: Step) -> None:
        if self.locked_until is not None and ctx.now.mono_ms >= self.locked_until:
            self.locked_until = None
            self._denials.clear()
            ctx.clear("brute_force")

    def policy_changed(self, ctx: Step) -> None:
        # A pending badge was judged under the old policy: make the person badge again.
        self._drop_pending(ctx, "policy_changed")

    def _drop_pending(self, ctx: Step, reason: str) -> None:
        if self.pending is not None:
            ctx.emit("access.expired", "info", {"person": self.pending.person, "reason": reason})
            ctx.cancel(Timer.PAIR)
            self.pending = None

    # --- durable state (deadlines on the wall clock: the monotonic one restarts) --------

    def to_state(self, now: Instant) -> dict[str, Any]:
        return {
            "denials_wall_ms": [now.wall_ms + t - now.mono_ms for t in self._denials],
            "locked_until_wall_ms": None
            if self.locked_until is None
            else now.wall_ms + self.locked_until - now.mono_ms,
        }

    def restore(self, ctx: Step, state: dict[str, Any]) -> None:
        now = ctx.now
        self._denials = [now.mono_ms + t - now.wall_ms for t in state["denials_wall_ms"]]
        until = state["locked_until_wall_ms"]
        if until is not None:
            # A lockout that ran out while the cabinet was off ends at once (timer due).
            self.locked_until = now.mono_ms + until - now.wall_ms
            ctx.start(Timer.LOCKOUT, until - now.wall_ms)

    def _count_denial(self, ctx: Step, policy: Policy) -> None:
        rules, now = policy.access, ctx.now.mono_ms
        horizon = now - rules.lockout_window_s * 1000
        self._denials = [t for t in self._denials if t > horizon] + [now]
        if len(self._denials) < rules.lockout_after:
            return
        self.locked_until = now + rules.lockout_s * 1000
        ctx.raise_("brute_force", denials=len(self._denials), lockout_s=rules.lockout_s)
        ctx.start(Timer.LOCKOUT, rules.lockout_s * 1000)
        self._drop_pending(ctx, "locked_out")
