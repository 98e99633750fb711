"""Federated feature statistics (issue #15): tables ``statistics_tasks`` and ``statistics_reports``.

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "statistics_tasks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(128), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("released_at", sa.Float, nullable=True),
        sa.Column("release", sa.Text, nullable=True),
        sa.Column("schema_version", sa.Integer, nullable=True),
        sa.Column("epsilon", sa.Float, nullable=True),
        sa.Column("ledger", sa.Text, nullable=True),
    )
    op.create_index("ix_statistics_tasks_model", "statistics_tasks", ["model"])
    op.create_table(
        "statistics_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("partner", sa.String(128), nullable=False),
        sa.Column("idem_key", sa.String(200), nullable=False),
        sa.Column("body_sha", sa.String(71), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("body_bytes", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("task_id", "device_id", name="uq_statistics_reports_device"),
    )


def downgrade() -> None:
    op.drop_table("statistics_reports")
    op.drop_index("ix_statistics_tasks_model", table_name="statistics_tasks")
    op.drop_table("statistics_tasks")
