"""The ledger's filters as a person gives them: a person by id or by name.

The store filters the ledger by person id. People on duty know names, not ids: the
person filter also matches everyone whose name in a cabinet's policy contains the text
(without regard to case), so "李" finds 李娜 and 李安全 and "zhang wei" finds Zhang Wei.
The page and the CSV export use this one function, so the file holds the rows shown.
"""

from __future__ import annotations

from typing import Any

from central.web.ports import ConsoleStore


def person_ids(store: ConsoleStore, text: str, device: str | None) -> set[str]:
    """The person ids the filter `text` means: the text as an id, and every person of the
    policies of `device` (or of every cabinet) whose name contains it."""
    wanted = text.strip()
    folded = wanted.casefold()
    ids = {wanted}
    devices = [device] if device else [c.device for c in store.cabinets()]
    for each in devices:
        ids.update(pid for pid, name, _ in store.persons(each) if folded in name.casefold())
    return ids


def ledger_rows(
    store: ConsoleStore,
    since_ms: int | None,
    until_ms: int | None,
    device: str | None,
    container: str | None,
    person: str | None,
) -> list[Any]:
    rows = store.ledger(since_ms=since_ms, until_ms=until_ms, device=device, container=container)
    if not person or not person.strip():
        return rows
    # the store's own person filter is this same test for one id, also done in Python
    ids = person_ids(store, person, device)
    return [r for r in rows if ids.intersection(r.persons) or r.approver in ids]
