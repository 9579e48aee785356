"""The centre's store: the verified record of every cabinet and what it means.

`Store.open(url)` on SQLite or PostgreSQL; see store.py for the API the console uses.
"""

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
