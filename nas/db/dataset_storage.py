"""Storage of datasets: content-addressed blobs, named datasets over them, and the jobs that use them.

Hands out frozen `DatasetRecord`s. The files themselves are placed and removed by `nas.datasets`, which
holds a lock per sha256 around each change here, so that an upload and a delete of the same bytes never
interleave.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, exists, func, select

from nas.db.models import DatasetBlobRow, DatasetRow, JobDatasetRow, JobRow
from search_spaces.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from nas.db.storage import Storage

ACTIVE_JOB_STATES = ("queued", "running")


@dataclass(frozen=True)
class DatasetRecord:
    id: int
    name: str
    sha256: str
    format: str
    size_bytes: int
    info: dict[str, Any]
    created_by: str | None
    created_at: datetime | None


def _record(row: DatasetRow, size_bytes: int) -> DatasetRecord:
    created = row.created_at
    if created is not None and created.tzinfo is None:  # SQLite hands back naive datetimes; they are UTC
        created = created.replace(tzinfo=UTC)
    return DatasetRecord(id=row.id, name=row.name, sha256=row.sha256, format=row.format, size_bytes=size_bytes,
                         info=dict(row.info or {}), created_by=row.created_by, created_at=created)


class DatasetStorage:
    """The datasets' tables, over one `Storage` (its sessions and error handling)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def _query(self) -> Any:
        return select(DatasetRow, DatasetBlobRow.size_bytes).join(DatasetBlobRow,
                                                                  DatasetBlobRow.sha256 == DatasetRow.sha256)

    def add(self, *, name: str, sha256: str, fmt: str, info: dict[str, Any], size_bytes: int, path: str,
            created_by: str | None) -> tuple[DatasetRecord, bool]:
        """Store a dataset (and its blob unless stored). The same name with the same bytes and format is the
        same dataset: returns it with `created=False`; the same name with other content is a ConflictError."""
        with self._storage.session() as s:
            found = s.execute(self._query().where(DatasetRow.name == name)).first()
            if found is not None:
                row, size = found
                if row.sha256 == sha256 and row.format == fmt:
                    return _record(row, size), False
                raise ConflictError(f"name: a dataset named {name!r} exists with other content (sha256 "
                                    f"{row.sha256[:12]}..., format {row.format}); pick another name, or delete "
                                    f"dataset {row.id} first")
            if s.get(DatasetBlobRow, sha256) is None:
                s.add(DatasetBlobRow(sha256=sha256, size_bytes=size_bytes, path=path))
                s.flush()
            row = DatasetRow(name=name, sha256=sha256, format=fmt, info=info, created_by=created_by)
            s.add(row)
            s.flush()
            return _record(row, size_bytes), True

    def get(self, dataset_id: int) -> DatasetRecord:
        with self._storage.session() as s:
            found = s.execute(self._query().where(DatasetRow.id == dataset_id)).first()
            if found is None:
                raise NotFoundError(f"dataset {dataset_id} does not exist", resource="dataset")
            return _record(*found)

    def by_name(self, name: str) -> DatasetRecord | None:
        with self._storage.session() as s:
            found = s.execute(self._query().where(DatasetRow.name == name)).first()
            return _record(*found) if found is not None else None

    def by_sha256(self, sha256: str) -> list[DatasetRecord]:
        with self._storage.session() as s:
            return [_record(*r) for r in s.execute(self._query().where(DatasetRow.sha256 == sha256)
                                                   .order_by(DatasetRow.id))]

    def list(self, *, offset: int = 0, limit: int = 100) -> tuple[int, list[DatasetRecord]]:
        with self._storage.session() as s:
            total = int(s.scalar(select(func.count()).select_from(DatasetRow)) or 0)
            rows = s.execute(self._query().order_by(DatasetRow.id.desc()).offset(offset).limit(limit))
            return total, [_record(*r) for r in rows]

    def blob_path(self, sha256: str) -> str:
        """Where the bytes of `sha256` are stored; NotFoundError when none are."""
        with self._storage.session() as s:
            row = s.get(DatasetBlobRow, sha256)
            if row is None:
                raise NotFoundError(f"no dataset with sha256 {sha256} is stored on this server; upload it",
                                    resource="dataset")
            return row.path

    def blob_exists(self, sha256: str) -> bool:
        with self._storage.session() as s:
            return s.get(DatasetBlobRow, sha256) is not None

    def delete(self, dataset_id: int) -> str | None:
        """Delete a dataset unless a queued or running job uses its bytes. Returns the blob's path when no
        dataset and no job refers to it any more (the caller removes the file), else None."""
        with self._storage.session() as s:
            row = s.get(DatasetRow, dataset_id)
            if row is None:
                raise NotFoundError(f"dataset {dataset_id} does not exist", resource="dataset")
            active = list(s.scalars(select(JobRow.id).join(JobDatasetRow, JobDatasetRow.job_id == JobRow.id)
                                    .where(JobDatasetRow.sha256 == row.sha256, JobRow.state.in_(ACTIVE_JOB_STATES))
                                    .order_by(JobRow.id)))
            if active:
                raise ConflictError(f"dataset {dataset_id} ({row.name!r}) is used by queued or running job(s) "
                                    f"{', '.join(map(str, active))}; wait for them to end, or cancel them first")
            sha256 = row.sha256
            s.delete(row)
            s.flush()
            still_used = s.scalar(select(exists().where(DatasetRow.sha256 == sha256))) or s.scalar(
                select(exists().where(JobDatasetRow.sha256 == sha256)))
            if still_used:
                return None
            blob = s.get(DatasetBlobRow, sha256)
            path = blob.path if blob is not None else None
            s.execute(delete(DatasetBlobRow).where(DatasetBlobRow.sha256 == sha256))
            return path

    @staticmethod
    def link_job(session: Any, job_id: int, sha256s: Sequence[str]) -> None:
        """Record, inside the job's creating transaction, the blobs its spec names."""
        for sha256 in sorted(set(sha256s)):
            session.add(JobDatasetRow(job_id=job_id, sha256=sha256))
