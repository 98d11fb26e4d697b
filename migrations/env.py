"""Alembic environment: runs on the connection inbox-daemon hands over (see storage/migrate.py)."""

from __future__ import annotations

from alembic import context

from inbox_daemon.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `inbox-daemon migrate --config FILE`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
