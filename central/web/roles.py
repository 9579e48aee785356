"""Who may see and do what: one explicit table, tested on its own.

Every signed-in role reads everything (an auditor's whole job is reading). Commands
follow the cabinet's own rules (signed commands: who may do what) so that the centre
refuses early what the cabinet would refuse anyway, and refuses what the cabinet cannot
know: an auditor's account may be linked to a keeper's person id, and still only reads.
"""

from __future__ import annotations

ROLES = ("operator", "keeper", "safety_officer", "auditor", "admin")

_DUTY = frozenset({"operator", "keeper", "safety_officer"})
_QUALIFIED = frozenset({"keeper", "safety_officer"})

COMMAND_ROLES: dict[str, frozenset[str]] = {
    # the people on duty: silence and look
    "ack": _DUTY,
    "snapshot": _DUTY,
    "resend": _DUTY,
    # changes of the books or of who may open: only qualified people (双人记账)
    "approve": _QUALIFIED,
    "approve_withdrawal": _QUALIFIED,
    "approve_disposal": _QUALIFIED,
    "resolve": _QUALIFIED,
    "stocktake": _QUALIFIED,
    # a new policy is an administrator's act (the policy itself is signed separately)
    "policy": frozenset({"admin"}),
}


def may_command(role: str, name: str) -> bool:
    return role in COMMAND_ROLES.get(name, frozenset())


def may_ack(role: str) -> bool:
    return may_command(role, "ack")


def may_weigh(role: str) -> bool:
    return may_command(role, "snapshot")


def second_persons(
    persons: list[tuple[str, str, tuple[str, ...]]], me: str
) -> list[tuple[str, str]]:
    """Who can sign a change of the books with me (双人记账): (id, name) of the other
    keepers and safety officers of the cabinet's policy, as the cabinet will check."""
    return [(pid, name) for pid, name, held in persons if pid != me and _QUALIFIED & set(held)]


def may_cosign(role: str) -> bool:
    """May an account of this role be the second person of a change of the books: the
    same qualified roles as the first (an auditor's account never signs, whoever it is)."""
    return role in _QUALIFIED


def may_resolve(role: str) -> bool:
    return may_command(role, "resolve")


def may_approve(role: str) -> bool:
    return may_command(role, "approve")
