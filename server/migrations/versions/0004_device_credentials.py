"""Device credentials and token lifetimes: app keys bound to a region, a device's own secret (hash only),
attestation, revocation and a server-side consent-withdrawn flag; tokens get an expiry.

Existing app keys are bound to the one region their devices share, or to ``default`` when they have none
or several (issue one key per region).  Existing devices have no stored secret: re-enrolling one needs its
current token or an admin reset.  Existing tokens keep ``expires_at`` NULL: their lifetime is counted from
``created_at`` with the configured TTL of their role.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("app_keys", sa.Column("region", sa.String(64), nullable=False, server_default="default"))
    op.execute(sa.text(
        "UPDATE app_keys SET region = (SELECT MIN(d.region) FROM devices d WHERE d.app_key_id = app_keys.id) "
        "WHERE (SELECT COUNT(DISTINCT d.region) FROM devices d WHERE d.app_key_id = app_keys.id) = 1"))
    op.add_column("tokens", sa.Column("expires_at", sa.Float, nullable=True))
    op.add_column("devices", sa.Column("secret_hash", sa.String(64), nullable=True))
    op.add_column("devices", sa.Column("attested", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("devices", sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("devices", sa.Column("consent_withdrawn_at", sa.Float, nullable=True))
    op.add_column("devices", sa.Column("reset_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as b:
        b.drop_column("reset_at")
        b.drop_column("consent_withdrawn_at")
        b.drop_column("revoked")
        b.drop_column("attested")
        b.drop_column("secret_hash")
    with op.batch_alter_table("tokens") as b:
        b.drop_column("expires_at")
    with op.batch_alter_table("app_keys") as b:
        b.drop_column("region")
