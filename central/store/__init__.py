"""The centre's store: the verified record of every cabinet and what it means.

`Store.open(url)` on SQLite or PostgreSQL; see store.py for the API the console uses.

`Store` is loaded on first use (PEP 562), not at import: the projections import the row
classes of central.store.records, and the store imports the projections, so an eager
`from central.store.store import Store` here would make `import central.projections.daily`
a cycle whenever it is the first of them to be imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from central.store.records import (
    ROLES,
    Alarm,
    AlarmStep,
    Book,
    Cabinet,
    DailyRow,
    LedgerRow,
    Pending,
    Quarantined,
    SessionRow,
    User,
)

if TYPE_CHECKING:
    from central.store.store import Store

__all__ = [
    "ROLES",
    "Alarm",
    "AlarmStep",
    "Book",
    "Cabinet",
    "DailyRow",
    "LedgerRow",
    "Pending",
    "Quarantined",
    "SessionRow",
    "Store",
    "User",
]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from central.store.store import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
