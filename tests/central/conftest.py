"""The real-part fixtures of tests.support (broker) and tests.central_service (PostgreSQL),
and the rig of a real agent, a real broker and cabinetctl (tests.central.agent_rig)."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.central.agent_rig import Rig
from tests.central_service.postgres import PostgresCluster
from tests.support.broker import Broker
from tests.support.fixtures import broker_certs, make_broker  # noqa: F401


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def rig(tmp_path: Path, make_broker: Callable[..., Broker]) -> Iterator[Rig]:  # noqa: F811
    made = Rig(tmp_path, make_broker(tls=False))
    try:
        yield made
    finally:
        made.close()
