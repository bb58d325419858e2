"""latency models keyed by the space's latency signature (options that change timing); the model a job predicts with

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nas_latency_models') as batch:
        batch.add_column(sa.Column('space_key', sa.String(length=16), nullable=False, server_default=''))
        batch.add_column(sa.Column('space_signature', sa.JSON(), nullable=True))
        batch.create_index('ix_nas_latency_models_space_key', ['space_key'])
    with op.batch_alter_table('nas_jobs') as batch:
        batch.add_column(sa.Column('latency_model_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_nas_jobs_latency_model_id', 'nas_latency_models', ['latency_model_id'], ['id'],
                                 ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('nas_jobs') as batch:
        batch.drop_constraint('fk_nas_jobs_latency_model_id', type_='foreignkey')
        batch.drop_column('latency_model_id')
    with op.batch_alter_table('nas_latency_models') as batch:
        batch.drop_index('ix_nas_latency_models_space_key')
        batch.drop_column('space_signature')
        batch.drop_column('space_key')
