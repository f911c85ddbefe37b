"""Alembic environment: runs on the connection the registry passes in (``attributes["connection"]``)."""

from __future__ import annotations

from alembic import context

from conveyor.registry.orm import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Conveyor migrations run through conveyor.registry.db.Database.upgrade()")

# The caller holds the transaction (and the migration lock): run every step inside it.
context.configure(connection=connection, target_metadata=Base.metadata, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
