"""Alembic environment of the state database (`dagloop migrate`); see `controller.store.migrate`."""
