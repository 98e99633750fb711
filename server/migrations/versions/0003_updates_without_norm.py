"""Updates: drop the ``norm`` column (computed at ingest, never read: the fold measures and clips every
update itself) and let ``within_clip`` be NULL (the device sent no claim).

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("updates") as b:
        b.drop_column("norm")
        b.alter_column("within_clip", existing_type=sa.Boolean(), nullable=True)


def downgrade() -> None:
    op.execute(sa.text("UPDATE updates SET within_clip = :t WHERE within_clip IS NULL").bindparams(t=True))
    with op.batch_alter_table("updates") as b:
        b.alter_column("within_clip", existing_type=sa.Boolean(), nullable=False)
        b.add_column(sa.Column("norm", sa.Float, nullable=False, server_default="0"))
