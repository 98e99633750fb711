"""Access grants bound to identities: ``activations.token_id`` (grants bind to the token, not its name) and
table ``evaluation_tasks`` (a device's model downloads are scoped to models it trains or evaluates).

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before this migration keep token_id NULL: they grant nothing (a marketer activates again).
    with op.batch_alter_table("activations") as b:
        b.add_column(sa.Column("token_id", sa.Integer, nullable=True))
    op.create_index("ix_activations_grant", "activations", ["token_id", "model", "version"])
    op.create_table(
        "evaluation_tasks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("issued_at", sa.Float, nullable=False),
    )
    op.create_index("ix_evaluation_tasks_device", "evaluation_tasks", ["device_id", "model"])


def downgrade() -> None:
    op.drop_index("ix_evaluation_tasks_device", table_name="evaluation_tasks")
    op.drop_table("evaluation_tasks")
    op.drop_index("ix_activations_grant", table_name="activations")
    with op.batch_alter_table("activations") as b:
        b.drop_column("token_id")
