"""Storage: every read and write of hwnas's tables goes through here (no SQL elsewhere)."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, defer, sessionmaker

from latency_models.device import BUILTIN_DEVICES, DeviceProfile
from nas.db.dataset_storage import DatasetStorage
from nas.db.models import (
    ApiTokenRow,
    CheckpointRow,
    DeviceProfileRow,
    FrontMemberRow,
    HypervolumeRow,
    JobRow,
    LatencyModelRow,
    LatencySampleRow,
    TrialRow,
    utcnow,
)
from search_spaces.errors import ConflictError, DatabaseUnavailableError, HwnasError, NotFoundError, StorageError

JOB_STATES = ("queued", "running", "completed", "failed", "cancelled")
FINISHED_JOB_STATES = ("completed", "failed", "cancelled")
TRIAL_STATES = ("pending", "running", "complete", "infeasible", "failed", "stopped")
FINISHED_TRIAL_STATES = ("complete", "infeasible", "failed", "stopped")


def is_disconnect(exc: BaseException) -> bool:
    """Whether a database error means "not reachable now" (server restarting, connection dropped, locked)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


class Storage:
    """Thin repository over one engine. Sessions commit or roll back as a unit."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._autocommit_sessions = sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"),
                                                 expire_on_commit=False)
        self._bound: contextvars.ContextVar[Session | None] = contextvars.ContextVar(f"hwnas-session-{id(self)}",
                                                                                    default=None)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    @contextlib.contextmanager
    def unit_of_work(self, *, autocommit: bool = False) -> Iterator[None]:
        """Run every storage call inside on one session (one pooled connection, one transaction), committed
        at the end: a request that makes several reads checks out one connection, not one per read.

        With `autocommit` each statement is its own transaction: no BEGIN and COMMIT round trips, for hot
        reads that need no snapshot shared by their statements."""
        if self._bound.get() is not None:
            yield
            return
        with self.session(autocommit=autocommit) as session:
            token = self._bound.set(session)
            try:
                yield
            finally:
                self._bound.reset(token)

    @contextlib.contextmanager
    def session(self, *, autocommit: bool = False) -> Iterator[Session]:
        bound = self._bound.get()
        if bound is not None:  # inside unit_of_work: its session, committed (or rolled back) by it
            yield bound
            return
        session = (self._autocommit_sessions if autocommit else self._sessions)()
        try:
            yield session
            session.commit()
        except HwnasError:
            session.rollback()
            raise
        except SQLAlchemyError as exc:
            with contextlib.suppress(SQLAlchemyError):
                session.rollback()
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if is_disconnect(exc):
                raise DatabaseUnavailableError(f"database unavailable: {first_line}") from exc
            raise StorageError(f"database error: {first_line}") from exc
        finally:
            with contextlib.suppress(SQLAlchemyError):
                session.close()

    def wait_until_available(self, *, timeout_s: float, poll_s: float = 1.0) -> None:
        """Block until the database answers again; raise `DatabaseUnavailableError` after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self.session() as s:
                    s.execute(text("SELECT 1"))
                return
            except DatabaseUnavailableError:
                if time.monotonic() >= deadline:
                    raise DatabaseUnavailableError(
                        f"the database at {self.engine.url!r} has not answered for {timeout_s:.0f} s; "
                        "check that it runs, or raise HWNAS_DB_OUTAGE_TIMEOUT_S") from None
                time.sleep(poll_s)

    # ---- device profiles -------------------------------------------------------------------------
    def ensure_builtin_devices(self) -> None:
        """Insert the built-in profiles unless present (safe when several processes start at once)."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        with self.session() as s:
            for profile in BUILTIN_DEVICES.values():
                s.execute(insert(DeviceProfileRow).values(**profile.model_dump(), created_at=utcnow())
                          .on_conflict_do_nothing(index_elements=["name"]))

    @staticmethod
    def _profile(row: DeviceProfileRow) -> DeviceProfile:
        return DeviceProfile(name=row.name, backend=row.backend, threads=row.threads,  # type: ignore[arg-type]
                             batch_size=row.batch_size, seq_len=row.seq_len, dtype=row.dtype,  # type: ignore[arg-type]
                             builtin=row.builtin)

    def device(self, name: str) -> DeviceProfile:
        with self.session() as s:
            row = s.get(DeviceProfileRow, name)
            if row is None:
                raise NotFoundError(f"device profile {name!r} does not exist; list them with `hwnas devices list` "
                                    "or add it with `hwnas devices add`")
            return self._profile(row)

    def add_device(self, profile: DeviceProfile) -> None:
        with self.session() as s:
            if s.get(DeviceProfileRow, profile.name) is not None:
                raise ConflictError(f"device profile {profile.name!r} already exists; pick another name "
                                    f"(see `hwnas devices show {profile.name}`)")
            s.add(DeviceProfileRow(**profile.model_dump(exclude={"builtin"}), builtin=False))

    def list_devices(self) -> list[DeviceProfile]:
        with self.session() as s:
            return [self._profile(r) for r in s.scalars(select(DeviceProfileRow).order_by(DeviceProfileRow.name))]

    # ---- jobs ------------------------------------------------------------------------------------
    @property
    def datasets(self) -> DatasetStorage:
        return DatasetStorage(self)

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

    def get_job(self, job_id: int) -> JobRow:
        with self.session() as s:
            job = s.get(JobRow, job_id)
            if job is None:
                raise NotFoundError(f"job {job_id} does not exist; list jobs with `hwnas jobs`")
            return job

    def job_version(self, job_id: int) -> tuple[str, int | None]:
        """The job's state and its newest checkpoint's id (what a finished job's answers depend on), in one
        query; NotFoundError for an unknown job."""
        with self.session() as s:
            newest = select(func.max(CheckpointRow.id)).where(CheckpointRow.job_id == job_id).scalar_subquery()
            row = s.execute(select(JobRow.state, newest).where(JobRow.id == job_id)).first()
            if row is None:
                raise NotFoundError(f"job {job_id} does not exist; list jobs with `hwnas jobs`")
            return str(row[0]), row[1]

    def list_jobs(self, *, limit: int = 100, offset: int = 0, states: Sequence[str] | None = None) -> list[JobRow]:
        """Jobs, newest first."""
        with self.session() as s:
            query = select(JobRow)
            if states:
                query = query.where(JobRow.state.in_(states))
            return list(s.scalars(query.order_by(JobRow.id.desc()).offset(offset).limit(limit)))

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
        with self.session() as s:
            values: dict[str, Any] = {"state": state, "message": message, "lease_owner": None,
                                      "lease_expires_at": None}
            if state in FINISHED_JOB_STATES:
                values["finished_at"] = utcnow()
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.lease_owner == owner).values(**values))

    def set_job_fields(self, job_id: int, **fields: Any) -> None:
        with self.session() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id).values(**fields))

    def request_cancel(self, job_id: int) -> str:
        """Cancel a queued job at once, or ask a running one to stop after its current trial."""
        with self.session() as s:
            job = s.get(JobRow, job_id, with_for_update=True)
            if job is None:
                raise NotFoundError(f"job {job_id} does not exist; list jobs with `hwnas jobs`")
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

    # ---- trials ----------------------------------------------------------------------------------
    def add_trials(self, *, job_id: int, items: Sequence[dict[str, Any]]) -> list[TrialRow]:
        """Store a batch of proposed trials (`number`, `optuna_number`, `arch`, `arch_hash` each, and any other
        column; pending with no attempts unless given) in one transaction."""
        with self.session() as s:
            rows = [TrialRow(**{"job_id": job_id, "state": "pending", "attempts": 0, **item}) for item in items]
            s.add_all(rows)
            s.flush()
            return rows

    def update_trial(self, trial_id: int, **fields: Any) -> None:
        with self.session() as s:
            s.execute(update(TrialRow).where(TrialRow.id == trial_id).values(**fields))

    def trials(self, job_id: int, *, states: Sequence[str] | None = None) -> list[TrialRow]:
        with self.session() as s:
            query = select(TrialRow).where(TrialRow.job_id == job_id)
            if states:
                query = query.where(TrialRow.state.in_(states))
            return list(s.scalars(query.order_by(TrialRow.number)))

    def trial(self, job_id: int, number: int) -> TrialRow:
        with self.session() as s:
            row = s.scalar(select(TrialRow).where(TrialRow.job_id == job_id, TrialRow.number == number))
            if row is None:
                raise NotFoundError(f"job {job_id} has no trial {number}; see `hwnas show {job_id}`")
            return row

    def trial_page(self, job_id: int, *, states: Sequence[str] | None = None, max_latency_ms: float | None = None,
                   offset: int = 0, limit: int = 100) -> tuple[int, list[TrialRow]]:
        """One page of a job's trials by number, and how many match the filters in all.

        `max_latency_ms` keeps trials whose best-known latency (measured, else predicted) is at most that.
        """
        with self.session() as s:
            where = [TrialRow.job_id == job_id]
            if states:
                where.append(TrialRow.state.in_(states))
            if max_latency_ms is not None:
                where.append(func.coalesce(TrialRow.measured_latency_ms, TrialRow.predicted_latency_ms)
                             <= max_latency_ms)
            total = int(s.scalar(select(func.count()).select_from(TrialRow).where(*where)) or 0)
            rows = list(s.scalars(select(TrialRow).where(*where).order_by(TrialRow.number)
                                  .offset(offset).limit(limit)))
            return total, rows

    def trial_state_counts(self, job_id: int) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(TrialRow.state, func.count()).where(TrialRow.job_id == job_id)
                             .group_by(TrialRow.state))
            return {state: int(n) for state, n in rows}

    def trial_state_counts_for(self, job_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """Each job's trial counts by state, in one query."""
        out: dict[int, dict[str, int]] = {job_id: {} for job_id in job_ids}
        if not job_ids:
            return out
        with self.session() as s:
            rows = s.execute(select(TrialRow.job_id, TrialRow.state, func.count())
                             .where(TrialRow.job_id.in_(list(job_ids))).group_by(TrialRow.job_id, TrialRow.state))
            for job_id, state, n in rows:
                out[job_id][state] = int(n)
        return out

    def latest_hypervolumes(self, job_ids: Sequence[int]) -> dict[int, float]:
        """Each job's newest hypervolume, in one query."""
        if not job_ids:
            return {}
        with self.session() as s:
            newest = (select(func.max(HypervolumeRow.id)).where(HypervolumeRow.job_id.in_(list(job_ids)))
                      .group_by(HypervolumeRow.job_id))
            rows = s.execute(select(HypervolumeRow.job_id, HypervolumeRow.hypervolume)
                             .where(HypervolumeRow.id.in_(newest)))
            return {job_id: value for job_id, value in rows}

    def latest_checkpoints(self, job_ids: Sequence[int]) -> dict[int, tuple[CheckpointRow, int]]:
        """Each job's newest checkpoint with its trial's number, in one query."""
        if not job_ids:
            return {}
        with self.session() as s:
            newest = (select(func.max(CheckpointRow.id)).where(CheckpointRow.job_id.in_(list(job_ids)))
                      .group_by(CheckpointRow.job_id))
            rows = s.execute(select(CheckpointRow, TrialRow.number)
                             .join(TrialRow, TrialRow.id == CheckpointRow.trial_id)
                             .where(CheckpointRow.id.in_(newest)))
            return {row.job_id: (row, number) for row, number in rows}

    def latency_models_by_id(self, model_ids: Sequence[int]) -> dict[int, LatencyModelRow]:
        """Latency models (without their pickled predictors), in one query."""
        if not model_ids:
            return {}
        with self.session() as s:
            rows = s.scalars(select(LatencyModelRow).options(defer(LatencyModelRow.payload, raiseload=True))
                             .where(LatencyModelRow.id.in_(list(model_ids))))
            return {row.id: row for row in rows}

    def jobs_by_id(self, job_ids: Sequence[int]) -> dict[int, JobRow]:
        if not job_ids:
            return {}
        with self.session() as s:
            return {row.id: row for row in s.scalars(select(JobRow).where(JobRow.id.in_(list(job_ids))))}

    def trial_by_id(self, trial_id: int) -> TrialRow:
        with self.session() as s:
            row = s.get(TrialRow, trial_id)
            if row is None:
                raise NotFoundError(f"trial id {trial_id} does not exist")
            return row

    def count_trials(self, job_id: int) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(TrialRow).where(TrialRow.job_id == job_id)) or 0)

    # ---- Pareto front ----------------------------------------------------------------------------
    def replace_front(self, job_id: int, members: Sequence[tuple[int, float, float]] | None, *, trials_done: int,
                      hypervolume: float, trial_update: tuple[int, dict[str, Any]] | None = None) -> None:
        """Store the job's current front `(trial_id, metric, latency_ms)` (None: unchanged) and append to its
        hypervolume history, in one transaction; with `trial_update` (trial id, fields), update that trial
        in the same transaction (the result that changed the front)."""
        with self.session() as s:
            if trial_update is not None:
                s.execute(update(TrialRow).where(TrialRow.id == trial_update[0]).values(**trial_update[1]))
            if members is not None:
                s.execute(delete(FrontMemberRow).where(FrontMemberRow.job_id == job_id))
                s.add_all(FrontMemberRow(job_id=job_id, trial_id=trial_id, metric=metric, latency_ms=latency_ms)
                          for trial_id, metric, latency_ms in members)
            s.add(HypervolumeRow(job_id=job_id, trials_done=trials_done, hypervolume=hypervolume))

    def front(self, job_id: int) -> list[tuple[FrontMemberRow, TrialRow]]:
        with self.session() as s:
            rows = s.execute(select(FrontMemberRow, TrialRow).join(TrialRow, TrialRow.id == FrontMemberRow.trial_id)
                             .where(FrontMemberRow.job_id == job_id).order_by(FrontMemberRow.latency_ms))
            return [(m, t) for m, t in rows]

    def hypervolume_history(self, job_id: int, *, last: int | None = None) -> list[HypervolumeRow]:
        """The job's hypervolume after each recorded trial, oldest first (only the `last` N when given)."""
        with self.session() as s:
            query = select(HypervolumeRow).where(HypervolumeRow.job_id == job_id).order_by(HypervolumeRow.id.desc())
            if last is not None:
                query = query.limit(last)
            return list(reversed(list(s.scalars(query))))

    # ---- latency samples and checkpoints ---------------------------------------------------------
    def add_latency_sample(self, *, device: str, space: str, space_version: int, arch_hash: str,
                           arch: dict[str, Any], sample: dict[str, Any], purpose: str, job_id: int | None,
                           trial_id: int | None) -> None:
        with self.session() as s:
            s.add(self._sample_row(device=device, space=space, space_version=space_version, arch_hash=arch_hash,
                                   arch=arch, sample=sample, purpose=purpose, job_id=job_id, trial_id=trial_id))

    @staticmethod
    def _sample_row(*, device: str, space: str, space_version: int, arch_hash: str, arch: dict[str, Any],
                    sample: dict[str, Any], purpose: str, job_id: int | None = None,
                    trial_id: int | None = None) -> LatencySampleRow:
        return LatencySampleRow(device=device, space=space, space_version=space_version, arch_hash=arch_hash,
                                arch=arch, median_ms=sample["median_ms"], p10_ms=sample["p10_ms"],
                                p90_ms=sample["p90_ms"], runs=sample["runs"], protocol=sample["protocol"],
                                purpose=purpose, job_id=job_id, trial_id=trial_id)

    def add_profile_samples(self, *, device: str, space: str, space_version: int,
                            samples: Sequence[dict[str, Any]]) -> None:
        """Store a profiling run's samples (`arch`, `arch_hash`, `sample`, `purpose` each) in one transaction."""
        with self.session() as s:
            s.add_all(self._sample_row(device=device, space=space, space_version=space_version,
                                       arch_hash=item["arch_hash"], arch=item["arch"], sample=item["sample"],
                                       purpose=item["purpose"])
                      for item in samples)

    def add_latency_model(self, *, device: str, space: str, space_version: int, space_key: str,
                          space_signature: dict[str, Any], kind: str, payload: bytes, report: dict[str, Any]) -> int:
        with self.session() as s:
            row = LatencyModelRow(device=device, space=space, space_version=space_version, space_key=space_key,
                                  space_signature=space_signature, kind=kind, payload=payload, report=report)
            s.add(row)
            s.flush()
            return row.id

    def latency_models(self, *, device: str | None = None, space: str | None = None,
                       space_key: str | None = None, with_payload: bool = True) -> list[LatencyModelRow]:
        """Stored latency models, newest first; `with_payload=False` leaves the pickled predictor unread."""
        with self.session() as s:
            query = select(LatencyModelRow)
            if not with_payload:
                query = query.options(defer(LatencyModelRow.payload, raiseload=True))
            if device is not None:
                query = query.where(LatencyModelRow.device == device)
            if space is not None:
                query = query.where(LatencyModelRow.space == space)
            if space_key is not None:
                query = query.where(LatencyModelRow.space_key == space_key)
            return list(s.scalars(query.order_by(LatencyModelRow.id.desc())))

    def latency_model(self, model_id: int, *, with_payload: bool = True) -> LatencyModelRow:
        with self.session() as s:
            options = [] if with_payload else [defer(LatencyModelRow.payload, raiseload=True)]
            row = s.get(LatencyModelRow, model_id, options=options)
            if row is None:
                raise NotFoundError(f"latency model {model_id} does not exist; list them with `hwnas devices show`")
            return row

    def latency_samples(self, *, job_id: int) -> list[LatencySampleRow]:
        with self.session() as s:
            return list(s.scalars(select(LatencySampleRow).where(LatencySampleRow.job_id == job_id)
                                  .order_by(LatencySampleRow.id)))

    def latest_sample_protocol(self, trial_id: int) -> dict[str, Any] | None:
        """The measurement protocol of the trial's newest latency sample, if it was measured."""
        with self.session() as s:
            return s.scalar(select(LatencySampleRow.protocol).where(LatencySampleRow.trial_id == trial_id)
                            .order_by(LatencySampleRow.id.desc()).limit(1))

    def add_checkpoint(self, *, job_id: int, trial_id: int, path: str, archive_path: str, sha256: str,
                       size_bytes: int, measured_latency_ms: float | None) -> CheckpointRow:
        with self.session() as s:
            row = CheckpointRow(job_id=job_id, trial_id=trial_id, path=path, archive_path=archive_path,
                                sha256=sha256, size_bytes=size_bytes, measured_latency_ms=measured_latency_ms)
            s.add(row)
            s.flush()
            s.refresh(row)
            return row

    def checkpoints(self, job_id: int) -> list[CheckpointRow]:
        with self.session() as s:
            return list(s.scalars(select(CheckpointRow).where(CheckpointRow.job_id == job_id)
                                  .order_by(CheckpointRow.id)))

    def checkpoint_by_archive_name(self, job_id: int, archive_name: str) -> CheckpointRow:
        """The job's checkpoint whose archive file is called `archive_name` (compared by name, never a path)."""
        for row in reversed(self.checkpoints(job_id)):
            if row.archive_path.rsplit("/", 1)[-1] == archive_name:
                return row
        raise NotFoundError(f"job {job_id} has no checkpoint archive named {archive_name!r}; "
                            "list the job's checkpoints with GET /api/v1/jobs/{job_id}")

    # ---- API tokens ------------------------------------------------------------------------------
    def add_token(self, *, name: str, scope: str, token_hash: str, prefix: str,
                  expires_at: datetime | None = None) -> int:
        with self.session() as s:
            row = ApiTokenRow(name=name, scope=scope, token_hash=token_hash, prefix=prefix, expires_at=expires_at)
            s.add(row)
            s.flush()
            return row.id

    def token_by_hash(self, token_hash: str) -> ApiTokenRow | None:
        """The live token with this hash (not revoked, not expired), if any."""
        with self.session() as s:
            return s.scalar(select(ApiTokenRow).where(
                ApiTokenRow.token_hash == token_hash, ApiTokenRow.revoked_at.is_(None),
                ApiTokenRow.expires_at.is_(None) | (ApiTokenRow.expires_at > utcnow())))

    def touch_token(self, token_id: int, *, stale_after_s: float) -> None:
        """Record a token's use unless it was recorded in the last `stale_after_s` (one conditional UPDATE,
        so that several API processes write it at most about once per interval)."""
        now = utcnow()
        cutoff = datetime.fromtimestamp(now.timestamp() - stale_after_s, tz=now.tzinfo)
        with self.session() as s:
            # synchronize_session=False: inside a unit of work the token's row is in this session already,
            # and evaluating the criteria on it in Python would compare SQLite's naive datetimes with aware ones.
            s.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_id,
                                                ApiTokenRow.last_used_at.is_(None)
                                                | (ApiTokenRow.last_used_at < cutoff))
                      .values(last_used_at=now).execution_options(synchronize_session=False))

    def list_tokens(self) -> list[ApiTokenRow]:
        with self.session() as s:
            return list(s.scalars(select(ApiTokenRow).order_by(ApiTokenRow.id)))

    def revoke_token(self, token_id: int) -> ApiTokenRow:
        with self.session() as s:
            row = s.get(ApiTokenRow, token_id)
            if row is None:
                raise NotFoundError(f"token {token_id} does not exist; list tokens with `hwnas token list`")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return row


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
