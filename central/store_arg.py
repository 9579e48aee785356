"""`--store` of cabinetctl: the centre's store (the one `cabinet-central` keeps), by URL or path.

`cabinetctl watch/import/export/report` read and write the same database as
`cabinet-central serve`, through `central.store.Store`: a `sqlite:///...` or
`postgresql://...` URL, or a plain file path (taken as a SQLite store). The ledger files
older versions of `cabinetctl watch --store` wrote (tables `events` and `problems`, no
schema version) are refused with the way to carry them over: `cabinetctl import OLD.db
--store NEW.db` re-verifies every envelope of the old file into the store.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from agent.wire import canonical, event_topic, parse_envelope
from central.errors import CentralError
from central.ingest.verifying import judge
from central.registry import Registry
from central.store import Store
from central.store.recording import STORED, Rejected, Verified
from central.verify import RawEnvelope
from config.policy import Policy

URL_SCHEMES = ("sqlite:", "postgresql:", "postgresql+")
STORE_HELP = "the centre's store: sqlite:///..., postgresql://... or a file path (SQLite)"
TOPIC_PREFIX = "cabinet"  # imported envelopes are judged as if published under it
PAGE = 1000


def store_url(text: str) -> str:
    """The database URL of `--store`: a URL as given, a path as a SQLite URL."""
    if text.startswith(URL_SCHEMES):
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def open_store(text: str, registry: Registry, *, create: bool) -> Store:
    """The store `--store` names, migrated to the current schema, its cabinets registered.

    `create=False` (export, report): a path that does not exist is an operator's mistake,
    not a request for an empty report.
    """
    url = store_url(text)
    if url.startswith("sqlite:"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists() and not create:
            raise CentralError(f"store {text} not found (made by `watch --store` or `import`)")
        if path.exists():
            refuse_old_ledger(path, text)
    store = Store.open(url)
    store.migrate()
    store.register_devices((d.id, d.site) for d in registry.devices.values())
    return store


def refuse_old_ledger(path: Path, text: str) -> None:
    """An old cabinetctl ledger file is not a store: say how to carry it over."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise CentralError(f"store {text}: not a usable database ({exc})") from None
    if "problems" in tables and "alembic_version" not in tables:
        raise CentralError(
            f"store {text} is a ledger of an older cabinetctl, not the centre's store: "
            f"carry it over with `cabinetctl import {text} --store NEW.db` (every envelope is "
            "verified again) and use NEW.db"
        )


class Names:
    """Names of people and containers: from `--policy` when given, else the store's policies."""

    def __init__(self, store: Store | None, policy: Policy | None) -> None:
        self._store, self._policy = store, policy
        self._people: dict[tuple[str, str], str | None] = {}

    def person(self, device: str, person: str) -> str | None:
        if self._policy is not None:
            found = self._policy.person_by_id(person)
            if found is not None:
                return found.name
        if self._store is None:
            return None
        if (device, person) not in self._people:
            self._people[(device, person)] = self._store.person_name(device, person)
        return self._people[(device, person)]

    def container(self, container: str, stored: str | None) -> str | None:
        """`stored`: the name the store's projection gave (from the policies it knows)."""
        if self._policy is not None:
            found = self._policy.container_by_id(container)
            if found is not None:
                return found.name
        return stored


def import_envelopes(store: Store, registry: Registry, raws: Iterable[bytes]) -> int:
    """Store already verified envelopes through the ingest's own judging and recording.

    Each is judged as if it had arrived on its device's topic (central.ingest.verifying)
    and recorded in one transaction (Store.record), exactly as `cabinet-central serve`
    stores what it receives; returns how many were new.
    """
    now_ms = int(time.time() * 1000)
    verified: list[Verified] = []
    for raw in raws:
        env = parse_envelope(raw)
        device = registry.devices[str(env["device"])]
        topic = event_topic(TOPIC_PREFIX, device.site, device.id, str(env["type"]))
        judged = judge(topic, canonical(env), registry.devices, now_ms)
        if not isinstance(judged, Verified):  # verify_input passed it: a bug if not
            reason = judged.reason if isinstance(judged, Rejected) else "not an envelope"
            raise CentralError(f"{device.id} seq {env['seq']}: {reason}")
        verified.append(judged)
    outcomes = store.record(verified)
    return sum(1 for outcome in outcomes if outcome == STORED)


def store_envelopes(url: str) -> list[RawEnvelope]:
    """Every stored envelope of a store given by URL, per device in seq order (`verify`)."""
    out: list[RawEnvelope] = []
    with Store.open(url) as store:
        for cabinet in store.cabinets():
            from_seq = 1
            while batch := store.events(cabinet.device, from_seq, PAGE):
                for payload in batch:
                    seq = int(parse_envelope(payload)["seq"])
                    where = f"row {cabinet.device}/{seq}"
                    out.append(RawEnvelope(len(out) + 1, where, payload, cabinet.device, seq))
                    from_seq = seq + 1
    return out
