"""Index ``tasks(device_id)``: a governed download asks whether the device ever held a task for the model.

Without it that question walked every round of the model (the index on ``(round_id, device_id)``
starts with the round), so each download cost more as training went on.

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_device", "tasks", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_device", table_name="tasks")
