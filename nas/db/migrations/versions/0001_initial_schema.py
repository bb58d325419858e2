"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 02:28:47.786336
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nas_device_profiles',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('backend', sa.String(length=32), nullable=False),
    sa.Column('threads', sa.Integer(), nullable=False),
    sa.Column('batch_size', sa.Integer(), nullable=False),
    sa.Column('seq_len', sa.Integer(), nullable=False),
    sa.Column('dtype', sa.String(length=16), nullable=False),
    sa.Column('builtin', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('nas_jobs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('space', sa.String(length=64), nullable=False),
    sa.Column('device', sa.String(length=64), nullable=False),
    sa.Column('latency_target_ms', sa.Float(), nullable=False),
    sa.Column('strategy', sa.String(length=32), nullable=False),
    sa.Column('trials_budget', sa.Integer(), nullable=False),
    sa.Column('study_name', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=128), nullable=True),
    sa.Column('lease_expires_at', sa.Float(), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('data_info', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nas_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nas_jobs_state'), ['state'], unique=False)

    op.create_table('nas_hypervolume_history',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('trials_done', sa.Integer(), nullable=False),
    sa.Column('hypervolume', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['nas_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nas_hypervolume_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nas_hypervolume_history_job_id'), ['job_id'], unique=False)

    op.create_table('nas_latency_models',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('device', sa.String(length=64), nullable=False),
    sa.Column('space', sa.String(length=64), nullable=False),
    sa.Column('space_version', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=True),
    sa.Column('report', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device'], ['nas_device_profiles.name'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nas_latency_models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nas_latency_models_device'), ['device'], unique=False)

    op.create_table('nas_trials',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('optuna_number', sa.Integer(), nullable=False),
    sa.Column('arch_hash', sa.String(length=32), nullable=False),
    sa.Column('arch', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('predicted_latency_ms', sa.Float(), nullable=True),
    sa.Column('predicted_latency_std_ms', sa.Float(), nullable=True),
    sa.Column('measured_latency_ms', sa.Float(), nullable=True),
    sa.Column('metric', sa.Float(), nullable=True),
    sa.Column('params', sa.Integer(), nullable=True),
    sa.Column('train_loss', sa.Float(), nullable=True),
    sa.Column('worker', sa.String(length=128), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('weights_path', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['nas_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'number', name='uq_nas_trials_job_number')
    )
    with op.batch_alter_table('nas_trials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nas_trials_arch_hash'), ['arch_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_nas_trials_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_nas_trials_state'), ['state'], unique=False)

    op.create_table('nas_checkpoints',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('archive_path', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('measured_latency_ms', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['nas_jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['trial_id'], ['nas_trials.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nas_checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nas_checkpoints_job_id'), ['job_id'], unique=False)

    op.create_table('nas_front_members',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('metric', sa.Float(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['nas_jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['trial_id'], ['nas_trials.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nas_front_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nas_front_members_job_id'), ['job_id'], unique=False)

    op.create_table('nas_latency_samples',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('device', sa.String(length=64), nullable=False),
    sa.Column('space', sa.String(length=64), nullable=False),
    sa.Column('space_version', sa.Integer(), nullable=False),
    sa.Column('arch_hash', sa.String(length=32), nullable=False),
    sa.Column('arch', sa.JSON(), nullable=False),
    sa.Column('median_ms', sa.Float(), nullable=False),
    sa.Column('p10_ms', sa.Float(), nullable=False),
    sa.Column('p90_ms', sa.Float(), nullable=False),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.Column('protocol', sa.JSON(), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('trial_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device'], ['nas_device_profiles.name'], ),
    sa.ForeignKeyConstraint(['job_id'], ['nas_jobs.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['trial_id'], ['nas_trials.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nas_latency_samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nas_latency_samples_arch_hash'), ['arch_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_nas_latency_samples_device'), ['device'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('nas_latency_samples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nas_latency_samples_device'))
        batch_op.drop_index(batch_op.f('ix_nas_latency_samples_arch_hash'))

    op.drop_table('nas_latency_samples')
    with op.batch_alter_table('nas_front_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nas_front_members_job_id'))

    op.drop_table('nas_front_members')
    with op.batch_alter_table('nas_checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nas_checkpoints_job_id'))

    op.drop_table('nas_checkpoints')
    with op.batch_alter_table('nas_trials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nas_trials_state'))
        batch_op.drop_index(batch_op.f('ix_nas_trials_job_id'))
        batch_op.drop_index(batch_op.f('ix_nas_trials_arch_hash'))

    op.drop_table('nas_trials')
    with op.batch_alter_table('nas_latency_models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nas_latency_models_device'))

    op.drop_table('nas_latency_models')
    with op.batch_alter_table('nas_hypervolume_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nas_hypervolume_history_job_id'))

    op.drop_table('nas_hypervolume_history')
    with op.batch_alter_table('nas_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nas_jobs_state'))

    op.drop_table('nas_jobs')
    op.drop_table('nas_device_profiles')
