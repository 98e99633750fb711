"""Governance: policies, hash-chained audit trail, residency partition keys, regional model lines,
per-cell privacy ledgers, federated evaluation, segments, activations, contribution records.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_partners",
        sa.Column("token_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("partner", sa.String(128), nullable=False),
    )
    op.add_column("models", sa.Column("line_of", sa.String(128), nullable=True))
    op.add_column("models", sa.Column("region", sa.String(64), nullable=True))
    op.add_column("models", sa.Column("candidate", sa.Integer, nullable=True))
    op.add_column("versions", sa.Column("status", sa.String(16), nullable=True))
    op.add_column("versions", sa.Column("gate", sa.Text, nullable=True))
    op.add_column("tasks", sa.Column("policy_version", sa.Integer, nullable=True))
    op.add_column("updates", sa.Column("region", sa.String(64), nullable=True))
    op.add_column("updates", sa.Column("partner", sa.String(128), nullable=True))
    op.create_index("ix_updates_round_region", "updates", ["round_id", "region"])

    op.create_table(
        "policies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("model", "version", name="uq_policies_model_version"),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_kind_code", "audit_log", ["kind", "code"])
    op.create_index("ix_audit_model", "audit_log", ["model"])
    op.create_table(
        "contributions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("update_id", sa.Integer, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("round_id", sa.String(40), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("partner", sa.String(128), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("num_examples", sa.Integer, nullable=False),
        sa.Column("body_bytes", sa.Integer, nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=True),
        sa.Column("purpose", sa.String(128), nullable=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_contributions_model", "contributions", ["model"])
    op.create_table(
        "cell_states",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("cell", sa.String(200), primary_key=True),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("partner", sa.String(128), nullable=False),
        sa.Column("ledger", sa.Text, nullable=False),
        sa.Column("releases", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "cell_aggregates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("round_id", sa.String(40), nullable=False),
        sa.Column("fold", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("partner", sa.String(128), nullable=False),
        sa.Column("contributors", sa.Integer, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("aggregate_sha", sa.String(71), nullable=False),
        sa.Column("epsilon", sa.Float, nullable=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_cell_aggregates_model", "cell_aggregates", ["model"])
    op.create_table(
        "eval_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("partner", sa.String(128), nullable=False),
        sa.Column("segment", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("loss_sum", sa.Float, nullable=False),
        sa.Column("hist", sa.Text, nullable=True),
        sa.Column("hits", sa.Float, nullable=False),
        sa.Column("ndcg", sa.Float, nullable=False),
        sa.Column("baseline_hits", sa.Float, nullable=False),
        sa.Column("body_bytes", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("model", "target", "version", "device_id", "segment", name="uq_eval_reports_key"),
    )
    op.create_index("ix_eval_reports_target", "eval_reports", ["model", "target"])
    op.create_table(
        "segment_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("purpose", sa.String(128), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("partner", sa.String(128), nullable=False),
        sa.Column("segment", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("body_bytes", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("model", "version", "purpose", "device_id", "segment", name="uq_segment_reports_key"),
    )
    op.create_table(
        "activations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("partner", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("purpose", sa.String(128), nullable=True),
        sa.Column("region", sa.String(64), nullable=True),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_activations_model", "activations", ["model"])


def downgrade() -> None:
    for table in ("activations", "segment_reports", "eval_reports", "cell_aggregates", "cell_states",
                  "contributions", "audit_log", "policies"):
        op.drop_table(table)
    op.drop_index("ix_updates_round_region", "updates")
    with op.batch_alter_table("updates") as b:
        b.drop_column("partner")
        b.drop_column("region")
    with op.batch_alter_table("tasks") as b:
        b.drop_column("policy_version")
    with op.batch_alter_table("versions") as b:
        b.drop_column("gate")
        b.drop_column("status")
    with op.batch_alter_table("models") as b:
        b.drop_column("candidate")
        b.drop_column("region")
        b.drop_column("line_of")
    op.drop_table("token_partners")
