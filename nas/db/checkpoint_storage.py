"""Exported checkpoints, as `CheckpointRecord`s."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select

from nas.db.base_storage import StorageBase
from nas.db.models import CheckpointRow, TrialRow
from nas.db.records import CheckpointRecord, from_row
from search_spaces.errors import NotFoundError


class CheckpointStore(StorageBase):
    def add_checkpoint(self, *, job_id: int, trial_id: int, path: str, archive_path: str, sha256: str,
                       size_bytes: int, measured_latency_ms: float | None) -> CheckpointRecord:
        with self.session() as s:
            row = CheckpointRow(job_id=job_id, trial_id=trial_id, path=path, archive_path=archive_path,
                                sha256=sha256, size_bytes=size_bytes, measured_latency_ms=measured_latency_ms)
            s.add(row)
            s.flush()
            s.refresh(row)
            return from_row(CheckpointRecord, row)

    def checkpoints(self, job_id: int) -> list[CheckpointRecord]:
        with self.session() as s:
            return [from_row(CheckpointRecord, row) for row in s.scalars(
                select(CheckpointRow).where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.id))]

    def checkpoint_by_archive_name(self, job_id: int, archive_name: str) -> CheckpointRecord:
        """The job's checkpoint whose archive file is called `archive_name` (compared by name, never a path)."""
        for row in reversed(self.checkpoints(job_id)):
            if row.archive_path.rsplit("/", 1)[-1] == archive_name:
                return row
        raise NotFoundError(f"job {job_id} has no checkpoint archive named {archive_name!r}", resource="checkpoint",
                            owner=job_id)

    def latest_checkpoints(self, job_ids: Sequence[int]) -> dict[int, tuple[CheckpointRecord, int]]:
        """Each job's newest checkpoint with its trial's number, in one query."""
        if not job_ids:
            return {}
        with self.session() as s:
            newest = (select(func.max(CheckpointRow.id)).where(CheckpointRow.job_id.in_(list(job_ids)))
                      .group_by(CheckpointRow.job_id))
            rows = s.execute(select(CheckpointRow, TrialRow.number)
                             .join(TrialRow, TrialRow.id == CheckpointRow.trial_id)
                             .where(CheckpointRow.id.in_(newest)))
            return {row.job_id: (from_row(CheckpointRecord, row), number) for row, number in rows}
