"""Workers: runs dispatched to and claimed by workers, the workers table, shipped logs.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from controller.store.migrate import apply_schema_step

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply `controller.store.schema` step 2."""
    apply_schema_step(revision)
