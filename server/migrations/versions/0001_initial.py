"""Initial schema: settings, auth, registry, rounds, updates, receipts.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "app_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("partner", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_tokens_device_id", "tokens", ["device_id"])
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(128), primary_key=True),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("partner", sa.String(128), nullable=False),
        sa.Column("app_key_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("current_version", sa.Integer, nullable=True),
        sa.Column("training", sa.Text, nullable=True),
        sa.Column("agg_state", sa.LargeBinary, nullable=True),
        sa.Column("stopped", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("content_key", sa.String(71), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("parent", sa.Integer, nullable=True),
        sa.Column("round_id", sa.String(40), nullable=True),
        sa.Column("contributors", sa.Integer, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("epsilon", sa.Float, nullable=True),
        sa.Column("delta", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("model", "version", name="uq_versions_model_version"),
    )
    op.create_index("ix_versions_model_content", "versions", ["model", "content_key"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_events_model", "events", ["model"])
    op.create_table(
        "rounds",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("open_key", sa.String(128), nullable=True, unique=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("goal", sa.Integer, nullable=False),
        sa.Column("min_clients", sa.Integer, nullable=False),
        sa.Column("task_cap", sa.Integer, nullable=False),
        sa.Column("deadline", sa.Float, nullable=True),
        sa.Column("accepted", sa.Integer, nullable=False),
        sa.Column("tasks_issued", sa.Integer, nullable=False),
        sa.Column("folds", sa.Integer, nullable=False),
        sa.Column("clip_norm", sa.Float, nullable=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("closed_at", sa.Float, nullable=True),
        sa.Column("result_version", sa.Integer, nullable=True),
        sa.Column("aggregate_sha", sa.String(71), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index("ix_rounds_model", "rounds", ["model"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("round_id", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("issued_at", sa.Float, nullable=False),
        sa.Column("deadline", sa.Float, nullable=False),
    )
    op.create_index("ix_tasks_round_device", "tasks", ["round_id", "device_id"])
    op.create_table(
        "updates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("round_id", sa.String(40), nullable=False),
        sa.Column("task_id", sa.String(40), nullable=False, unique=True),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("base_version", sa.Integer, nullable=False),
        sa.Column("num_examples", sa.Integer, nullable=False),
        sa.Column("within_clip", sa.Boolean, nullable=False),
        sa.Column("norm", sa.Float, nullable=False),
        sa.Column("encoding", sa.String(8), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_updates_round_id", "updates", ["round_id"])
    op.create_table(
        "receipts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("round_id", sa.String(40), nullable=False),
        sa.Column("idem_key", sa.String(200), nullable=False),
        sa.Column("body_sha", sa.String(71), nullable=False),
        sa.Column("update_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("device_id", "round_id", "idem_key", name="uq_receipts_key"),
    )


def downgrade() -> None:
    for table in ("receipts", "updates", "tasks", "rounds", "events", "versions", "models", "devices",
                  "tokens", "app_keys", "settings"):
        op.drop_table(table)
