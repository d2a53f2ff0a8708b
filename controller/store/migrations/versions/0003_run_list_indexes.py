"""The API at scale: indexes to list runs newest first (all, by status) and to find a run id.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from controller.store.migrate import apply_schema_step

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply `controller.store.schema` step 3."""
    apply_schema_step(revision)
