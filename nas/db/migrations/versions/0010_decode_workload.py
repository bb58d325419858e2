"""Device profiles say what is timed: a forward pass (every profile stored before) or per-token decoding with
the key-value cache (`workload`, `decode_tokens`)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nas_device_profiles") as batch:
        batch.add_column(sa.Column("workload", sa.String(length=16), nullable=False, server_default="forward"))
        batch.add_column(sa.Column("decode_tokens", sa.Integer(), nullable=False, server_default="32"))


def downgrade() -> None:
    with op.batch_alter_table("nas_device_profiles") as batch:
        batch.drop_column("decode_tokens")
        batch.drop_column("workload")
