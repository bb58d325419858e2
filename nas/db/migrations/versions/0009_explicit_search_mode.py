"""Every stored job spec names its search mode and strategy: jobs stored before `search.mode` existed ran
standalone (with nsga2 where no strategy was named), and a spec that leaves them out now means one-shot and
evolution where the space has a supernet

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    jobs = sa.table("nas_jobs", sa.column("id", sa.Integer), sa.column("spec", sa.JSON))
    bind = op.get_bind()
    for job_id, spec in bind.execute(sa.select(jobs.c.id, jobs.c.spec)).all():
        if isinstance(spec, str):  # a driver that hands JSON back undecoded
            spec = json.loads(spec)
        if not isinstance(spec, dict):
            continue
        search = spec.get("search")
        if isinstance(search, dict) and search.get("mode") and spec.get("strategy"):
            continue
        if not (isinstance(search, dict) and search.get("mode")):
            spec = {**spec, "search": {**(search if isinstance(search, dict) else {}), "mode": "standalone"}}
        if not spec.get("strategy"):  # the default it ran with (a left-out strategy now depends on the mode)
            spec = {**spec, "strategy": "nsga2"}
        bind.execute(jobs.update().where(jobs.c.id == job_id).values(spec=spec))


def downgrade() -> None:
    pass  # an explicit standalone mode is what the older code assumed anyway
