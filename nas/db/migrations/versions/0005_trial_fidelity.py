"""Multi-fidelity trials: training steps reached and the metric at each rung (stopped trials keep theirs)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nas_trials") as batch:
        batch.add_column(sa.Column("steps_done", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rungs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nas_trials") as batch:
        batch.drop_column("rungs")
        batch.drop_column("steps_done")
