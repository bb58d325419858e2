"""An index on a latency sample's trial: exporting a checkpoint reads its trial's newest measurement

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_nas_latency_samples_trial_id", "nas_latency_samples", ["trial_id"])


def downgrade() -> None:
    op.drop_index("ix_nas_latency_samples_trial_id", table_name="nas_latency_samples")
