"""Running sums of open sync rounds (fold on arrival): table ``round_sums``.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "round_sums",
        sa.Column("round_id", sa.String(40), primary_key=True),
        sa.Column("part", sa.String(200), primary_key=True),
        sa.Column("shard", sa.String(40), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("round_sums")
