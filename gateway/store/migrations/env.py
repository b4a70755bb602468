"""Alembic environment. Migrations run through gateway.store.db.Database.upgrade() (on start-up or with
`callin db upgrade`), which hands over an open connection; there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from gateway.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `callin db upgrade` (gateway.store.db.Database.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
