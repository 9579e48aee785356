"""The throwaway PostgreSQL cluster of bench/postgres.py, as a real part of the tests:
missing, it skips (outside CI) or fails the run (CI=true), like every real part."""

from __future__ import annotations

from bench.postgres import PostgresCluster as _Cluster
from bench.postgres import PostgresMissing
from tests.realparts import missing


class PostgresCluster(_Cluster):
    def __init__(self) -> None:
        try:
            super().__init__()
        except PostgresMissing as exc:
            missing("PostgreSQL", str(exc))
