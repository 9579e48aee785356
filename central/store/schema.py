"""The centre's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Two kinds of table:
- the **record**: `events` (every verified envelope, byte-exact, keyed by device and
  seq) and `quarantine` (everything that failed, with the reason). Nothing else is a
  source of truth; it is never rewritten.
- **projections**, derived from the record in seq order per device and rebuildable
  from it at any time (`cabinet-central rebuild`): cabinets, alarms and their steps,
  books, sessions, ledger, measurements, pending first badges.
Plus the people of the console (`users`, `api_tokens`), the names from the policies
(`policy_names`) and `meta` (the change mark).

The DDL lives in the Alembic migrations (central/store/migrations/versions); a test
compares the migrated database with these declarations so they cannot drift.
Free-form objects (alarm details, person lists) are JSON text: portable between the
two backends, and never queried inside.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

DEVICE = 64  # same shape as the registry's device ids
ID = 128  # alarm, session, container and person ids, nonces

events = Table(
    "events",
    metadata,
    Column("device", String(DEVICE), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("boot", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("sev", String(16), nullable=False),
    Column("hash", String(64), nullable=False),  # chain hash of payload: the next prev
    Column("prev", String(64), nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),  # the exact verified bytes
    Index("events_type_ts", "type", "ts"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", String(64), nullable=False, unique=True),  # of reason+topic+payload
    Column("received_ms", BigInteger, nullable=False),
    Column("topic", Text),
    Column("device", String(DEVICE)),
    Column("seq", BigInteger),
    Column("reason", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
)

cabinets = Table(
    "cabinets",
    metadata,
    Column("device", String(DEVICE), primary_key=True),
    Column("site", String(DEVICE), nullable=False, default=""),
    # from the retained status topic (birth / Last Will), unsigned: presence only
    Column("online", Boolean, nullable=False, default=False),
    Column("status_boot", BigInteger),
    Column("status_last_seq", BigInteger),
    Column("status_ms", BigInteger),
    # ingest cursor: the record is gap-free and projected up to projected_seq
    Column("projected_seq", BigInteger, nullable=False, default=0),
    Column("projected_hash", String(64)),
    Column("top_seq", BigInteger, nullable=False, default=0),
    Column("boot", BigInteger),
    Column("last_seen_ms", BigInteger),
    Column("last_heartbeat_ms", BigInteger),
    Column("outbox_unsent", BigInteger),
    # resend requests for the first gap, shared by every serve process (rate limit)
    Column("resend_lo", BigInteger),
    Column("resend_hi", BigInteger),
    Column("resend_asked_ms", BigInteger),
    Column("resend_asks", Integer, nullable=False, default=0),
)

alarms = Table(
    "alarms",
    metadata,
    Column("device", String(DEVICE), primary_key=True),
    Column("alarm", String(ID), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("raised_ms", BigInteger, nullable=False),
    Column("raised_seq", BigInteger, nullable=False),
    Column("details", Text, nullable=False),
    Column("acked_by", String(ID)),
    Column("ack_comment", Text),
    Column("acked_ms", BigInteger),
    Column("cleared_ms", BigInteger),
    Column("clear_reason", String(64)),
)

alarm_steps = Table(
    "alarm_steps",
    metadata,
    Column("device", String(DEVICE), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("alarm", String(ID), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("what", String(16), nullable=False),
    Column("by", String(ID)),
    Column("comment", Text),
    Index("alarm_steps_alarm", "device", "alarm"),
)

books = Table(
    "books",
    metadata,
    Column("device", String(DEVICE), primary_key=True),
    Column("container", String(ID), primary_key=True),
    Column("slot", Integer),
    Column("cas", String(32)),
    Column("book_mg", BigInteger),
    Column("measured_mg", BigInteger),
    Column("as_of_seq", BigInteger, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("device", String(DEVICE), primary_key=True),
    Column("session", String(ID), primary_key=True),
    Column("persons", Text, nullable=False),
    Column("granted_ms", BigInteger, nullable=False),
    Column("granted_seq", BigInteger, nullable=False),
    Column("closed_ms", BigInteger),
    Column("mode", String(16), nullable=False),
)

ledger = Table(
    "ledger",
    metadata,
    Column("device", String(DEVICE), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("session", String(ID)),
    Column("kind", String(16), nullable=False),
    Column("container", String(ID), nullable=False),
    Column("cas", String(32)),
    Column("amount_mg", BigInteger, nullable=False),
    Column("book_mg", BigInteger),
    Column("persons", Text, nullable=False),
    Column("approval", String(ID)),
    Column("approver", String(ID)),
    Column("purpose", Text),
    Index("ledger_ts", "ts_ms"),
)

measurements = Table(
    "measurements",
    metadata,
    Column("device", String(DEVICE), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("container", String(ID), primary_key=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("measured_mg", BigInteger, nullable=False),
    Column("book_mg", BigInteger),
)

pending = Table(
    "pending",
    metadata,
    Column("device", String(DEVICE), primary_key=True),
    Column("person", String(ID), primary_key=True),
    Column("reader", String(ID)),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

# the last approval command (by nonce) each device acknowledged: who approved, for the ledger
approvals = Table(
    "approvals",
    metadata,
    Column("device", String(DEVICE), primary_key=True),
    Column("nonce", String(ID), primary_key=True),
    Column("by", String(ID)),
    Column("purpose", Text),
)

policy_names = Table(
    "policy_names",
    metadata,
    Column("device", String(DEVICE), primary_key=True),  # "*": a policy for any cabinet
    Column("kind", String(16), primary_key=True),  # person | container
    Column("id", String(ID), primary_key=True),
    Column("name", Text, nullable=False),
    Column("detail", Text),  # a container's class
    Column("version", BigInteger, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("login", String(ID), primary_key=True),
    Column("person", String(ID), nullable=False),
    Column("role", String(32), nullable=False),
    Column("password_hash", Text),  # argon2id; NULL: token-only account
    Column("created_ms", BigInteger, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # SHA-256 hex: never the token
    Column("login", String(ID), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

PROJECTIONS = (alarms, alarm_steps, books, sessions, ledger, measurements, pending, approvals)
