"""The API at scale: indexes to list runs newest first (all, by status) and to find a run id.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from controller.store.migrate import apply_schema_step

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply `controller.store.schema` step 4."""
    apply_schema_step(revision)
