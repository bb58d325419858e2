"""Storage: every read and write of hwnas's tables goes through here (no SQL elsewhere).

One `Storage` over one engine, made of a store per aggregate: jobs (`job_storage`), trials and the front
(`trial_storage`), devices and latency (`latency_storage`), checkpoints (`checkpoint_storage`), tokens
(`token_storage`) and datasets (`storage.datasets`). Reads hand out frozen records (`nas.db.records`);
writes are named state transitions (claim a job, start a trial, complete it, ...).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from nas.db.base_storage import (
    FINISHED_JOB_STATES,
    FINISHED_TRIAL_STATES,
    JOB_STATES,
    TRIAL_STATES,
    StorageBase,
    is_disconnect,
)
from nas.db.checkpoint_storage import CheckpointStore
from nas.db.job_storage import JobStore
from nas.db.latency_storage import LatencyStore
from nas.db.token_storage import TokenStore
from nas.db.trial_storage import ProposedTrial, TrialStore
from search_spaces.errors import StorageError

__all__ = ["FINISHED_JOB_STATES", "FINISHED_TRIAL_STATES", "JOB_STATES", "TRIAL_STATES", "ProposedTrial", "Storage",
           "StorageBase", "is_disconnect", "isoformat", "open_storage"]


class Storage(JobStore, TrialStore, LatencyStore, CheckpointStore, TokenStore):
    """Every store over one engine and its sessions."""


def open_storage(url: str, *, pool_size: int = 5) -> Storage:
    """An engine for `url` (keeping `pool_size` connections), migrated to the newest schema, with the built-in
    device profiles."""
    from nas.db.engine import make_engine, upgrade_database

    engine = make_engine(url, pool_size=pool_size)
    try:
        upgrade_database(engine)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot open or migrate the database at {engine.url!r}: "
                           f"{str(exc).splitlines()[0]}; check HWNAS_DATABASE_URL") from exc
    storage = Storage(engine)
    storage.ensure_builtin_devices()
    return storage


def isoformat(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
