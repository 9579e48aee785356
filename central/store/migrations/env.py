"""Alembic environment: always run with the connection the Store hands over.

`Store.migrate()` opens the transaction (and, on PostgreSQL, takes an advisory lock so
two `serve` processes starting at once do not both create tables), then runs Alembic
on that connection. There is no alembic.ini: nothing here reads a URL of its own.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
