"""Datasets (content-addressed blobs, named datasets, the jobs that use them); token expiry and last use;
who created each job

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nas_dataset_blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "nas_datasets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("nas_dataset_blobs.sha256"), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("info", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", name="uq_nas_datasets_name"),
    )
    op.create_index("ix_nas_datasets_sha256", "nas_datasets", ["sha256"])
    op.create_table(
        "nas_job_datasets",
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("nas_jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("nas_dataset_blobs.sha256"), primary_key=True),
    )
    op.create_index("ix_nas_job_datasets_sha256", "nas_job_datasets", ["sha256"])
    with op.batch_alter_table("nas_api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("nas_jobs") as batch:
        batch.add_column(sa.Column("created_by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nas_jobs") as batch:
        batch.drop_column("created_by")
    with op.batch_alter_table("nas_api_tokens") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
    op.drop_index("ix_nas_job_datasets_sha256", "nas_job_datasets")
    op.drop_table("nas_job_datasets")
    op.drop_index("ix_nas_datasets_sha256", "nas_datasets")
    op.drop_table("nas_datasets")
    op.drop_table("nas_dataset_blobs")
