"""Federation (one server per region under a global coordinator): tables ``federation_*``.

Coordinator side: region credentials, federated models, global rounds and the regional aggregates
pushed into them.  Region side: the links between local and global versions, and the push outbox.
Both roles share one schema; a server's role decides which tables it fills.

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "federation_regions",
        sa.Column("region", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("revoked", sa.Boolean, nullable=False, default=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=True),
        sa.Column("last_version", sa.Integer, nullable=True),
    )
    op.create_table(
        "federation_models",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "federation_rounds",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("open_key", sa.String(128), nullable=True, unique=True),
        sa.Column("deadline", sa.Float, nullable=False),
        sa.Column("min_regions", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("closed_at", sa.Float, nullable=True),
        sa.Column("result_version", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index("ix_federation_rounds_model", "federation_rounds", ["model"])
    op.create_table(
        "federation_aggregates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idem_key", sa.String(200), nullable=False, unique=True),
        sa.Column("global_round", sa.String(40), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("contributors", sa.Integer, nullable=False),
        sa.Column("clip_bits", sa.Float, nullable=True),
        sa.Column("epsilon", sa.Float, nullable=True),
        sa.Column("delta", sa.Float, nullable=True),
        sa.Column("aggregate_sha", sa.String(71), nullable=False),
        sa.Column("used", sa.Boolean, nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("global_round", "region", name="uq_federation_aggregates_round_region"),
    )
    op.create_table(
        "federation_links",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("global_version", sa.Integer, primary_key=True),
        sa.Column("local_version", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "federation_pushes",
        sa.Column("round_id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("global_round", sa.String(40), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for name in ("federation_pushes", "federation_links", "federation_aggregates", "federation_rounds",
                 "federation_models", "federation_regions"):
        op.drop_table(name)
