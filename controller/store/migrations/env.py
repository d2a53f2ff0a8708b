"""Alembic's entry point: migrate the database of the URL `controller.store.migrate` configured."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from controller.store.tables import METADATA

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = create_engine(url, poolclass=NullPool)
with engine.connect() as connection:
    # One transaction per revision: a failure leaves the database at the last whole version.
    # Types and server defaults are part of the schema too, for `alembic revision
    # --autogenerate` (`dagloop migrate --check` compares them the same way).
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        transaction_per_migration=True,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
