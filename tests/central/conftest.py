"""The real-part fixtures of tests.support (broker) and tests.central_service (PostgreSQL)."""

from collections.abc import Iterator

import pytest

from tests.central_service.postgres import PostgresCluster
from tests.support.fixtures import broker_certs, make_broker  # noqa: F401


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    yield cluster
    cluster.destroy()
