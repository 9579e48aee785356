"""Connecting to the store's database: one URL, two backends, the same transactions.

- SQLite (`sqlite:////abs/path/central.db`): WAL, `synchronous=FULL` (a committed event
  survives a power cut: it is acknowledged to the broker only after the commit), a busy
  timeout, and `BEGIN IMMEDIATE` for every transaction so that several `serve`
  processes on one file serialise their writes up front instead of failing to upgrade a
  read lock half way through.
- PostgreSQL (`postgresql://...`, driven by psycopg 3): READ COMMITTED; writers that
  touch one device's projections lock its `cabinets` row first (`FOR UPDATE`), always
  in device order, so concurrent processes neither interleave nor deadlock.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from central.errors import EX_CONFIG, CentralError

READ_ONLY = "cabinet_read_only"  # execution option: a transaction that only reads
MIGRATION_LOCK = 0x0CAB1E7  # pg_advisory_xact_lock key: one migrating process at a time


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CentralError(f"database url {url!r} is not a URL", EX_CONFIG) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise CentralError("database url: SQLite needs a file (sqlite:////abs/path.db)")
        engine = create_engine(parsed, connect_args={"timeout": 30})
        _sqlite_transactions(engine)
        return engine
    if backend == "postgresql":
        # psycopg 3 whatever driver the URL named (or none): one driver, one behaviour.
        engine = create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
        return engine
    raise CentralError(
        f"database url {url!r}: only sqlite:// and postgresql:// are supported", EX_CONFIG
    )


def _sqlite_transactions(engine: Engine) -> None:
    # pysqlite's own transaction handling starts transactions lazily and as DEFERRED;
    # take it over (SQLAlchemy's documented recipe) so every transaction is IMMEDIATE.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Readers (the console, the API) take no write lock: WAL lets them read a
        # consistent snapshot while a writer commits.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN DEFERRED")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


# Statements are built once per (dialect, table, columns) and executed with parameters:
# building and hashing a fresh Core expression costs more than running it on SQLite.
@functools.cache
def _insert_ignore(dialect: str, table: Table) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    key = next(iter(table.primary_key.columns))
    # rowcount is -1 on psycopg for this statement: ask for the inserted key instead.
    return module.insert(table).on_conflict_do_nothing().returning(key)


@functools.cache
def _upsert(dialect: str, table: Table, columns: frozenset[str], keys: tuple[str, ...]) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table)
    changes = {k: stmt.excluded[k] for k in sorted(columns) if k not in keys}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=changes)


def insert_ignore(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert one row unless its primary key (or a unique key) is taken; True if inserted."""
    stmt = _insert_ignore(conn.dialect.name, table)
    return _execute_prepared(conn, stmt, values).first() is not None


def upsert(conn: Connection, table: Table, values: Mapping[str, Any], keys: list[str]) -> None:
    """Insert one row, or update the given non-key columns where the primary key exists."""
    stmt = _upsert(conn.dialect.name, table, frozenset(values), tuple(keys))
    _execute_prepared(conn, stmt, values)


@dataclass(frozen=True)
class _Prepared:
    sql: str
    names: tuple[str, ...] | None  # the parameters' order (qmark style), or None (named)


_PREPARED: dict[tuple[int, str, frozenset[str] | None], _Prepared] = {}


def execute_fixed(conn: Connection, stmt: Any, values: Mapping[str, Any]) -> Any:
    """Run a statement built once (a module constant whose only parameters are named
    `bindparam`s) with `values`: compiled once per dialect, not rebuilt and hashed per row."""
    return _run_prepared(conn, _prepare(conn, stmt, None), values)


def execute_fixed_many(conn: Connection, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """`execute_fixed` for many parameter sets: one executemany by the driver."""
    _run_many(conn, _prepare(conn, stmt, None), rows)


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows that all have the same columns: one executemany by the driver, with
    no per-row parameter processing by SQLAlchemy (~15 us a row, a third of storing)."""
    if rows:
        _run_many(conn, _prepare(conn, _insert(table), frozenset(rows[0])), rows)


@functools.cache
def _insert(table: Table) -> Any:
    return table.insert()


def _execute_prepared(conn: Connection, stmt: Any, values: Mapping[str, Any]) -> Any:
    # SQLAlchemy 2.0 has no cache key for INSERT ... ON CONFLICT, so it would compile the
    # statement again on every call (measured: ~0.3 ms, most of a projection's cost).
    # These statements are fixed, their values plain str/int/None: compile once per
    # column set and hand the SQL to the driver.
    return _run_prepared(conn, _prepare(conn, stmt, frozenset(values)), values)


def _prepare(conn: Connection, stmt: Any, columns: frozenset[str] | None) -> _Prepared:
    key = (id(stmt), conn.dialect.name, columns)
    prepared = _PREPARED.get(key)
    if prepared is None:
        keys = sorted(columns) if columns is not None else None
        compiled = stmt.compile(dialect=conn.dialect, column_keys=keys)
        names = tuple(compiled.positiontup) if compiled.positional else None
        prepared = _PREPARED.setdefault(key, _Prepared(compiled.string, names))
    return prepared


def _run_prepared(conn: Connection, prepared: _Prepared, values: Mapping[str, Any]) -> Any:
    return conn.exec_driver_sql(prepared.sql, _parameters(prepared, values))


def _run_many(conn: Connection, prepared: _Prepared, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        conn.exec_driver_sql(prepared.sql, [_parameters(prepared, row) for row in rows])


def _parameters(prepared: _Prepared, values: Mapping[str, Any]) -> Any:
    if prepared.names is None:
        return dict(values)
    return tuple(values[name] for name in prepared.names)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; safe from several processes)."""
    config = Config()
    location = importlib.resources.files("central.store") / "migrations"
    config.set_main_option("script_location", str(location))
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
