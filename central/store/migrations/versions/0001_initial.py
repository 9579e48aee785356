"""The first schema of the centre's store: the record, projections, people, names.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DEVICE = 64
ID = 128


def _ms(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.BigInteger, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("boot", sa.BigInteger, nullable=False),
        _ms("ts", False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("sev", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("prev", sa.String(64), nullable=False),
        _ms("received_ms", False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("events_type_ts", "events", ["type", "ts"])
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        _ms("received_ms", False),
        sa.Column("topic", sa.Text),
        sa.Column("device", sa.String(DEVICE)),
        sa.Column("seq", sa.BigInteger),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "cabinets",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("site", sa.String(DEVICE), nullable=False),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("status_boot", sa.BigInteger),
        sa.Column("status_last_seq", sa.BigInteger),
        _ms("status_ms"),
        sa.Column("projected_seq", sa.BigInteger, nullable=False),
        sa.Column("projected_hash", sa.String(64)),
        sa.Column("top_seq", sa.BigInteger, nullable=False),
        sa.Column("boot", sa.BigInteger),
        _ms("last_seen_ms"),
        _ms("last_heartbeat_ms"),
        sa.Column("outbox_unsent", sa.BigInteger),
        sa.Column("resend_lo", sa.BigInteger),
        sa.Column("resend_hi", sa.BigInteger),
        _ms("resend_asked_ms"),
        sa.Column("resend_asks", sa.Integer, nullable=False),
    )
    op.create_table(
        "alarms",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("alarm", sa.String(ID), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        _ms("raised_ms", False),
        sa.Column("raised_seq", sa.BigInteger, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("acked_by", sa.String(ID)),
        sa.Column("ack_comment", sa.Text),
        _ms("acked_ms"),
        _ms("cleared_ms"),
        sa.Column("clear_reason", sa.String(64)),
    )
    op.create_table(
        "alarm_steps",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("alarm", sa.String(ID), nullable=False),
        _ms("ts_ms", False),
        sa.Column("what", sa.String(16), nullable=False),
        sa.Column("by", sa.String(ID)),
        sa.Column("comment", sa.Text),
    )
    op.create_index("alarm_steps_alarm", "alarm_steps", ["device", "alarm"])
    op.create_table(
        "books",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("container", sa.String(ID), primary_key=True),
        sa.Column("slot", sa.Integer),
        sa.Column("cas", sa.String(32)),
        sa.Column("book_mg", sa.BigInteger),
        sa.Column("measured_mg", sa.BigInteger),
        sa.Column("as_of_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("session", sa.String(ID), primary_key=True),
        sa.Column("persons", sa.Text, nullable=False),
        _ms("granted_ms", False),
        sa.Column("granted_seq", sa.BigInteger, nullable=False),
        _ms("closed_ms"),
        sa.Column("mode", sa.String(16), nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        _ms("ts_ms", False),
        sa.Column("session", sa.String(ID)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("container", sa.String(ID), nullable=False),
        sa.Column("cas", sa.String(32)),
        sa.Column("amount_mg", sa.BigInteger, nullable=False),
        sa.Column("book_mg", sa.BigInteger),
        sa.Column("persons", sa.Text, nullable=False),
        sa.Column("approval", sa.String(ID)),
        sa.Column("approver", sa.String(ID)),
        sa.Column("purpose", sa.Text),
    )
    op.create_index("ledger_ts", "ledger", ["ts_ms"])
    op.create_table(
        "measurements",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("container", sa.String(ID), primary_key=True),
        _ms("ts_ms", False),
        sa.Column("measured_mg", sa.BigInteger, nullable=False),
        sa.Column("book_mg", sa.BigInteger),
    )
    op.create_table(
        "pending",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("person", sa.String(ID), primary_key=True),
        sa.Column("reader", sa.String(ID)),
        _ms("expires_at_ms", False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "approvals",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("nonce", sa.String(ID), primary_key=True),
        sa.Column("by", sa.String(ID)),
        sa.Column("purpose", sa.Text),
    )
    op.create_table(
        "policy_names",
        sa.Column("device", sa.String(DEVICE), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("id", sa.String(ID), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("login", sa.String(ID), primary_key=True),
        sa.Column("person", sa.String(ID), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.Text),
        _ms("created_ms", False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("login", sa.String(ID), nullable=False),
        _ms("created_ms", False),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(
        sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.BigInteger)),
        [{"key": "change_mark", "value": 0}],
    )


def downgrade() -> None:
    for table in (
        "meta",
        "api_tokens",
        "users",
        "policy_names",
        "approvals",
        "pending",
        "measurements",
        "ledger",
        "sessions",
        "books",
        "alarm_steps",
        "alarms",
        "cabinets",
        "quarantine",
        "events",
    ):
        op.drop_table(table)
