"""The schema of dagloop 0.1: runs, steps, requests, instances, totals, skipped ticks.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from controller.store.migrate import apply_schema_step

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply `controller.store.schema` step 1."""
    apply_schema_step(revision)
