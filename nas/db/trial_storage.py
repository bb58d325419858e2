"""Trials and the Pareto front: proposals stored in batches, the named transitions of a trial's life, and
reads as `TrialRecord`s and `FrontMember`s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from nas.db.base_storage import StorageBase
from nas.db.models import FrontMemberRow, HypervolumeRow, TrialRow, utcnow
from nas.db.records import FrontMember, HypervolumePoint, TrainedResult, TrialRecord, from_row
from search_spaces.errors import NotFoundError


@dataclass(frozen=True)
class ProposedTrial:
    """A trial the strategy proposed, stored already in its first state: `running` (dispatched at once) or
    `infeasible` (predicted over the target; `error` says why)."""

    number: int
    optuna_number: int
    arch: dict[str, Any]
    arch_hash: str
    predicted_latency_ms: float
    predicted_latency_std_ms: float
    state: str
    error: str | None = None


class TrialStore(StorageBase):
    def add_trials(self, *, job_id: int, proposals: Sequence[ProposedTrial]) -> list[TrialRecord]:
        """Store a batch of proposed trials in one transaction."""
        now = utcnow()
        with self.session() as s:
            rows = []
            for p in proposals:
                started = {"started_at": now, "attempts": 1} if p.state == "running" else \
                    {"finished_at": now, "attempts": 0}
                rows.append(TrialRow(job_id=job_id, **{f.name: getattr(p, f.name) for f in fields(p)}, **started))
            s.add_all(rows)
            s.flush()
            return [from_row(TrialRecord, row) for row in rows]

    # ---- transitions -----------------------------------------------------------------------------
    def _set_trial(self, trial_id: int, **values: Any) -> None:
        # Records are copies: no object in the session to synchronise, so the ORM need not evaluate the update.
        with self.session() as s:
            s.execute(update(TrialRow).where(TrialRow.id == trial_id).values(**values)
                      .execution_options(synchronize_session=False))

    def start_trial(self, trial_id: int, *, attempts: int, started_at: datetime,
                    predicted_latency_ms: float | None = None, predicted_latency_std_ms: float | None = None) -> None:
        """Dispatch (again): running, one more attempt; with its prediction when it was made now."""
        prediction = {} if predicted_latency_ms is None else {
            "predicted_latency_ms": predicted_latency_ms, "predicted_latency_std_ms": predicted_latency_std_ms}
        self._set_trial(trial_id, state="running", attempts=attempts, started_at=started_at, **prediction)

    def mark_infeasible(self, trial_id: int, *, reason: str, predicted_latency_ms: float,
                        predicted_latency_std_ms: float) -> None:
        """Predicted over the latency target: never trained."""
        self._set_trial(trial_id, state="infeasible", finished_at=utcnow(), error=reason,
                  predicted_latency_ms=predicted_latency_ms, predicted_latency_std_ms=predicted_latency_std_ms)

    def fail_trial(self, trial_id: int, *, error: str, worker: str | None = None) -> None:
        values = {"worker": worker} if worker is not None else {}
        self._set_trial(trial_id, state="failed", error=error, finished_at=utcnow(), **values)

    def requeue_trial(self, trial_id: int, *, error: str | None, worker: str | None) -> None:
        """Its worker was lost: pending, to be dispatched again."""
        self._set_trial(trial_id, state="pending", error=error, worker=worker)

    def promote_trial(self, trial_id: int, result: TrainedResult) -> None:
        """A rung trained and kept: pending, to continue to the next rung."""
        self._set_trial(trial_id, state="pending", **result.columns())

    def stop_trial(self, trial_id: int, result: TrainedResult, *, reason: str) -> None:
        """Stopped early at a rung (its result kept)."""
        self._set_trial(trial_id, state="stopped", finished_at=utcnow(), **{**result.columns(), "error": reason})

    def record_final_training(self, trial_id: int, result: TrainedResult) -> None:
        """A one-shot finalist trained on from its inherited weights: its final figures (the inherited ones
        are kept in `result.metrics`)."""
        self._set_trial(trial_id, **result.columns())

    def record_measurement(self, trial_id: int, *, measured_latency_ms: float) -> None:
        """The trial's latency measured on the job's device."""
        self._set_trial(trial_id, measured_latency_ms=measured_latency_ms)

    def complete_trial(self, job_id: int, trial_id: int, result: TrainedResult, *,
                       front: Sequence[tuple[int, float, float]] | None, trials_done: int, hypervolume: float) -> None:
        """The trial trained its whole budget: complete, with the front it changed (None: unchanged) and the
        hypervolume, in one transaction (the record a crash is recovered from)."""
        with self.unit_of_work():  # one transaction for the three writes
            self._set_trial(trial_id, state="complete", finished_at=utcnow(), **result.columns())
            self.replace_front(job_id, front, trials_done=trials_done, hypervolume=hypervolume)

    # ---- reads -----------------------------------------------------------------------------------
    def trials(self, job_id: int, *, states: Sequence[str] | None = None) -> list[TrialRecord]:
        with self.session() as s:
            query = select(TrialRow).where(TrialRow.job_id == job_id)
            if states:
                query = query.where(TrialRow.state.in_(states))
            return [from_row(TrialRecord, row) for row in s.scalars(query.order_by(TrialRow.number))]

    def trial(self, job_id: int, number: int) -> TrialRecord:
        with self.session() as s:
            row = s.scalar(select(TrialRow).where(TrialRow.job_id == job_id, TrialRow.number == number))
            if row is None:
                raise NotFoundError(f"job {job_id} has no trial {number}", resource="trial", owner=job_id)
            return from_row(TrialRecord, row)

    def trial_by_id(self, trial_id: int) -> TrialRecord:
        with self.session() as s:
            row = s.get(TrialRow, trial_id)
            if row is None:
                raise NotFoundError(f"trial id {trial_id} does not exist", resource="trial")
            return from_row(TrialRecord, row)

    def trial_page(self, job_id: int, *, states: Sequence[str] | None = None, max_latency_ms: float | None = None,
                   offset: int = 0, limit: int = 100) -> tuple[int, list[TrialRecord]]:
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
            rows = s.scalars(select(TrialRow).where(*where).order_by(TrialRow.number).offset(offset).limit(limit))
            return total, [from_row(TrialRecord, row) for row in rows]

    def count_trials(self, job_id: int) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(TrialRow).where(TrialRow.job_id == job_id)) or 0)

    def trial_state_counts(self, job_id: int) -> dict[str, int]:
        return self.trial_state_counts_for([job_id])[job_id]

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

    # ---- the Pareto front ------------------------------------------------------------------------
    def replace_front(self, job_id: int, members: Sequence[tuple[int, float, float]] | None, *, trials_done: int,
                      hypervolume: float) -> None:
        """Store the job's current front `(trial_id, metric, latency_ms)` (None: unchanged) and append to its
        hypervolume history, in one transaction."""
        with self.session() as s:
            if members is not None:
                s.execute(delete(FrontMemberRow).where(FrontMemberRow.job_id == job_id)
                          .execution_options(synchronize_session=False))
                s.add_all(FrontMemberRow(job_id=job_id, trial_id=trial_id, metric=metric, latency_ms=latency_ms)
                          for trial_id, metric, latency_ms in members)
            s.add(HypervolumeRow(job_id=job_id, trials_done=trials_done, hypervolume=hypervolume))

    def front(self, job_id: int) -> list[FrontMember]:
        """The job's stored front, fastest first."""
        with self.session() as s:
            rows = s.execute(select(FrontMemberRow, TrialRow).join(TrialRow, TrialRow.id == FrontMemberRow.trial_id)
                             .where(FrontMemberRow.job_id == job_id).order_by(FrontMemberRow.latency_ms))
            return [FrontMember(from_row(TrialRecord, t), m.metric, m.latency_ms) for m, t in rows]

    def hypervolume_history(self, job_id: int, *, last: int | None = None) -> list[HypervolumePoint]:
        """The job's hypervolume after each recorded trial, oldest first (only the `last` N when given)."""
        with self.session() as s:
            query = select(HypervolumeRow).where(HypervolumeRow.job_id == job_id).order_by(HypervolumeRow.id.desc())
            if last is not None:
                query = query.limit(last)
            return [from_row(HypervolumePoint, row) for row in reversed(list(s.scalars(query)))]

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
