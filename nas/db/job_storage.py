"""Jobs: submission, leases, the named transitions of a job's life, and reads as `JobRecord`s."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update

from nas.db.base_storage import FINISHED_JOB_STATES, StorageBase
from nas.db.dataset_storage import DatasetStorage
from nas.db.models import CheckpointRow, JobRow, utcnow
from nas.db.records import Baseline, JobRecord, from_row
from search_spaces.errors import ConflictError, NotFoundError


def job_not_found(job_id: int) -> NotFoundError:
    return NotFoundError(f"job {job_id} does not exist", resource="job")


class JobStore(StorageBase):
    @property
    def datasets(self) -> DatasetStorage:
        return DatasetStorage(self)  # type: ignore[arg-type]

    def create_job(self, *, spec: dict[str, Any], name: str | None, space: str, device: str,
                   latency_target_ms: float, strategy: str, trials_budget: int, created_by: str | None = None,
                   dataset_sha256s: Sequence[str] = ()) -> int:
        """Store a queued job and, in the same transaction, the stored datasets it uses."""
        with self.session() as s:
            job = JobRow(name=name, state="queued", spec=spec, space=space, device=device,
                         latency_target_ms=latency_target_ms, strategy=strategy, trials_budget=trials_budget,
                         study_name="pending", cancel_requested=False, created_by=created_by)
            s.add(job)
            s.flush()
            job.study_name = f"hwnas-job-{job.id}"
            DatasetStorage.link_job(s, job.id, dataset_sha256s)
            return job.id

    def get_job(self, job_id: int) -> JobRecord:
        with self.session() as s:
            job = s.get(JobRow, job_id)
            if job is None:
                raise job_not_found(job_id)
            return from_row(JobRecord, job)

    def job_version(self, job_id: int) -> tuple[str, int | None]:
        """The job's state and its newest checkpoint's id (what a finished job's answers depend on), in one
        query; NotFoundError for an unknown job."""
        with self.session() as s:
            newest = select(func.max(CheckpointRow.id)).where(CheckpointRow.job_id == job_id).scalar_subquery()
            row = s.execute(select(JobRow.state, newest).where(JobRow.id == job_id)).first()
            if row is None:
                raise job_not_found(job_id)
            return str(row[0]), row[1]

    def list_jobs(self, *, limit: int = 100, offset: int = 0, states: Sequence[str] | None = None) -> list[JobRecord]:
        """Jobs, newest first."""
        with self.session() as s:
            query = select(JobRow)
            if states:
                query = query.where(JobRow.state.in_(states))
            return [from_row(JobRecord, row)
                    for row in s.scalars(query.order_by(JobRow.id.desc()).offset(offset).limit(limit))]

    def jobs_by_id(self, job_ids: Sequence[int]) -> dict[int, JobRecord]:
        if not job_ids:
            return {}
        with self.session() as s:
            return {row.id: from_row(JobRecord, row)
                    for row in s.scalars(select(JobRow).where(JobRow.id.in_(list(job_ids))))}

    def count_jobs(self, *, states: Sequence[str] | None = None) -> int:
        with self.session() as s:
            query = select(func.count()).select_from(JobRow)
            if states:
                query = query.where(JobRow.state.in_(states))
            return int(s.scalar(query) or 0)

    def running_job_count(self) -> int:
        """Jobs running under a live lease (held by any controller): the cluster's share-out."""
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(JobRow).where(
                JobRow.state == "running", JobRow.lease_expires_at >= time.time())) or 0)

    def next_queued_job(self, *, exclude: Sequence[int] = ()) -> int | None:
        """The oldest queued job, or a running one whose lease has expired (its controller died)."""
        with self.session() as s:
            query = select(JobRow.id).where(
                (JobRow.state == "queued")
                | ((JobRow.state == "running") & (JobRow.lease_expires_at < time.time())))
            if exclude:
                query = query.where(JobRow.id.not_in(list(exclude)))
            return s.scalar(query.order_by(JobRow.id).limit(1))

    # ---- the lease -------------------------------------------------------------------------------
    def claim_job(self, job_id: int, *, owner: str, ttl_s: float) -> bool:
        """Take the job's lease if it is queued, or running under an expired lease. Atomic."""
        now = time.time()
        with self.session() as s:
            result = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .where((JobRow.state == "queued")
                       | ((JobRow.state == "running") & ((JobRow.lease_expires_at.is_(None))
                                                         | (JobRow.lease_expires_at < now))))
                .values(state="running", lease_owner=owner, lease_expires_at=now + ttl_s,
                        started_at=func.coalesce(JobRow.started_at, utcnow()))
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def renew_lease(self, job_id: int, *, owner: str, ttl_s: float) -> bool:
        with self.session() as s:
            result = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.lease_owner == owner,
                                                    JobRow.state == "running")
                               .values(lease_expires_at=time.time() + ttl_s))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def release_job(self, job_id: int, *, owner: str, state: str, message: str | None) -> None:
        """End the lease: the job ends in `state` (or goes back to queued) with `message`."""
        with self.session() as s:
            values: dict[str, Any] = {"state": state, "message": message, "lease_owner": None,
                                      "lease_expires_at": None}
            if state in FINISHED_JOB_STATES:
                values["finished_at"] = utcnow()
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.lease_owner == owner).values(**values))

    # ---- what the phases record ------------------------------------------------------------------
    def _set_job(self, job_id: int, **values: Any) -> None:
        with self.session() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id).values(**values)
                      .execution_options(synchronize_session=False))

    def record_data_description(self, job_id: int, data_info: dict[str, Any]) -> None:
        """What the job's task found in its data (sizes, vocabulary, labels)."""
        self._set_job(job_id, data_info=data_info)

    def _merge_preparation(self, job_id: int, **parts: Any) -> None:
        """Set `parts` of the job's preparation record (its options, its baseline), keeping the others."""
        with self.session() as s:
            job = s.get(JobRow, job_id, with_for_update=True)
            if job is None:
                raise job_not_found(job_id)
            job.preparation = {**(job.preparation or {}), **parts}

    def record_progress(self, job_id: int, message: str) -> None:
        """What a long phase is doing (the job's message, shown by the API, SSE and the page)."""
        self._set_job(job_id, message=message)

    def record_preparation(self, job_id: int, options: dict[str, Any]) -> None:
        """The options the space's preparation made (paths to its cached artifacts); a stored baseline stays."""
        self._merge_preparation(job_id, options=options)

    def record_baseline(self, job_id: int, baseline: Baseline) -> None:
        """The baseline the job is compared with (measured on its device)."""
        self._merge_preparation(job_id, baseline=baseline.to_dict())

    def record_latency_model(self, job_id: int, latency_model_id: int) -> None:
        """The stored latency model the job's search predicts with."""
        self._set_job(job_id, latency_model_id=latency_model_id)

    # ---- cancelling ------------------------------------------------------------------------------
    def request_cancel(self, job_id: int) -> str:
        """Cancel a queued job at once, or ask a running one to stop after its current trial."""
        with self.session() as s:
            job = s.get(JobRow, job_id, with_for_update=True)
            if job is None:
                raise job_not_found(job_id)
            if job.state in FINISHED_JOB_STATES:
                raise ConflictError(f"job {job_id} is already {job.state}; nothing to cancel")
            job.cancel_requested = True
            if job.state == "queued":
                job.state = "cancelled"
                job.finished_at = utcnow()
                job.message = "cancelled before it started"
            return job.state

    def cancel_requested(self, job_id: int) -> bool:
        with self.session() as s:
            return bool(s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id)))
