"""The store's tests run on both backends: an SQLite file and a throwaway PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from central.ingest.verifying import judge
from central.registry import Device
from central.store import Store
from central.store.recording import Presence, Rejected, Verified
from tests.central.cabinet import FakeCabinet
from tests.central_service.postgres import PostgresCluster
from tests.support.fixtures import broker_certs, make_broker  # noqa: F401


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    yield cluster
    cluster.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.new_database()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    opened.migrate()
    yield opened
    opened.close()


class Feed:
    """Sends a fake cabinet's envelopes through the ingest's judge into a store."""

    def __init__(self, store: Store, *cabinets: FakeCabinet) -> None:
        self.store = store
        self.devices = {
            c.device: Device(c.device, c.site, c.device, c.key.public) for c in cabinets
        }
        store.register_devices((c.device, c.site) for c in cabinets)

    def raw(self, topic: str, payload: bytes, at_ms: int = 1) -> list[str]:
        item = judge(topic, payload, self.devices, at_ms)
        if isinstance(item, Verified):
            return self.store.record([item])
        if isinstance(item, Presence):
            self.store.record([], presence=[item])
            return ["presence"]
        assert isinstance(item, Rejected)
        self.store.record([], rejected=[item])
        return ["quarantined"]

    def send(self, cabinet: FakeCabinet, *envelopes: object) -> list[str]:
        out: list[str] = []
        for env in envelopes or cabinet.envelopes:
            out += self.raw(cabinet.topic(env), env.payload)  # type: ignore[attr-defined]
        return out


@pytest.fixture
def feed(store: Store) -> Callable[..., Feed]:
    return lambda *cabinets: Feed(store, *cabinets)
