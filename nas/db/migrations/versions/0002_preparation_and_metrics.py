"""job preparation (teacher, importance, baseline) and per-trial metrics

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nas_jobs') as batch:
        batch.add_column(sa.Column('preparation', sa.JSON(), nullable=True))
    with op.batch_alter_table('nas_trials') as batch:
        batch.add_column(sa.Column('metrics', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nas_trials') as batch:
        batch.drop_column('metrics')
    with op.batch_alter_table('nas_jobs') as batch:
        batch.drop_column('preparation')
