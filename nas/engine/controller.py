"""The controller: runs one job's search loop under a lease, as the single writer of its results.

Flow: claim the job (a lease renewed by a heartbeat thread), let the space prepare once per job (the
pruned-bert space fine-tunes or reuses its cached teacher and scores importance; the baseline's
latency is measured and stored with the job), reconcile what a dead process left
(re-dispatch trials that were running, fail asked-but-unrecorded Optuna trials), then ask the
strategy for candidates, predict their latency with the device's stored predictor (profiling the
device first when there is none), mark those predicted over the target by more than their
uncertainty infeasible without training, dispatch the rest to the executor, and record each result
(trial row, Optuna tell, Pareto front, hypervolume). At the end every front member is re-measured on
the device, and the best trial whose measured latency meets the target is exported.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from latency_models.base import LatencyModel
from latency_models.device import DeviceProfile
from latency_models.meter import LatencySample, pinned_threads
from nas.db.models import JobRow, TrialRow, utcnow
from nas.db.storage import FINISHED_TRIAL_STATES, Storage
from nas.engine.fidelity import rung_budgets
from nas.engine.job_context import ControllerStats, JobContext
from nas.engine.job_end import finish_job
from nas.engine.latency import job_latency_model
from nas.engine.pareto import Point
from nas.engine.recording import EventHook, Recorder
from nas.settings import Settings
from nas.spec import JobSpec
from nas.engine.strategies.base import StrategyConfig, make_strategy
from search_spaces.arch import Arch
from search_spaces.base import Preparation, SearchSpace, get_space
from search_spaces.errors import ConflictError, DatabaseUnavailableError, HwnasError
from workers.executors.base import Executor
from workers.device_tasks import DeviceRunner
from nas.datasets import materialize_task
from workers.evaluate import task_and_space
from workers.types import CandidateTask, EvalResult

logger = logging.getLogger(__name__)
LatencyModelFactory = Callable[[SearchSpace, DeviceProfile], LatencyModel]
FAIR_SHARE_REFRESH_S = 2.0  # how often the jobs running on the cluster are counted


@dataclass
class _Heartbeat:
    storage: Storage
    job_id: int
    owner: str
    ttl_s: float
    lost: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(self.ttl_s / 4):
            try:
                if not self.storage.renew_lease(self.job_id, owner=self.owner, ttl_s=self.ttl_s):
                    self.lost.set()
                    return
            except HwnasError as exc:  # a database hiccup: try again next beat, the lease has slack
                logger.warning("lease renewal for job %s failed: %s", self.job_id, exc)


class Controller:
    """Runs jobs from the database. `executor_factory` is called once per job run.

    `latency_model_factory` replaces the stored predictors (tests); `device_runner` decides where
    measurements run (a Ray node with the device's resource, or here).
    """

    def __init__(self, storage: Storage, settings: Settings, *, executor_factory: Callable[[], Executor],
                 latency_model_factory: LatencyModelFactory | None = None, device_runner: DeviceRunner | None = None,
                 owner: str | None = None, on_event: EventHook | None = None) -> None:
        self.storage = storage
        self.latency_model_factory = latency_model_factory
        self.device_runner = device_runner or DeviceRunner(use_ray=settings.executor == "ray",
                                                           ray_address=settings.ray_address)
        self.settings = settings
        self.executor_factory = executor_factory
        self.owner = owner or f"controller-{uuid.uuid4().hex[:12]}"
        self.on_event = on_event or (lambda kind, data: None)
        self.recorder = Recorder(storage, settings, on_event=self.on_event)
        self.stats: dict[int, ControllerStats] = {}

    # ---- job lifecycle ---------------------------------------------------------------------------
    def run_job(self, job_id: int) -> JobRow:
        """Claim and run `job_id` to its end; return its final row. Raise `ConflictError` if leased elsewhere."""
        ttl = self.settings.lease_ttl_s
        if not self.storage.claim_job(job_id, owner=self.owner, ttl_s=ttl):
            job = self.storage.get_job(job_id)
            if job.state == "running":
                left = (job.lease_expires_at or 0) - time.time()
                raise ConflictError(f"job {job_id} is being run by {job.lease_owner} (lease valid {left:.0f} s more); "
                                    "wait for it, or resume after its lease expires")
            raise ConflictError(f"job {job_id} is {job.state}; only queued or interrupted jobs can run")
        heartbeat = _Heartbeat(self.storage, job_id, self.owner, ttl)
        thread = threading.Thread(target=heartbeat.run, name=f"hwnas-lease-{job_id}", daemon=True)
        thread.start()
        try:
            state, message = self._run_claimed(job_id, heartbeat)
        except KeyboardInterrupt:
            self.storage.release_job(job_id, owner=self.owner, state="queued",
                                     message=f"interrupted; continue with `hwnas resume {job_id}`")
            raise
        except Exception as exc:
            logger.exception("job %s failed", job_id)
            text = str(exc) if isinstance(exc, HwnasError) else f"{type(exc).__name__}: {exc}"
            self.storage.release_job(job_id, owner=self.owner, state="failed", message=text)
        else:
            self.storage.release_job(job_id, owner=self.owner, state=state, message=message)
        finally:
            heartbeat.stop.set()
            thread.join(timeout=5)
        return self.storage.get_job(job_id)

    def _context(self, job: JobRow) -> JobContext:
        spec = JobSpec.model_validate(job.spec)
        spec = spec.model_copy(update={"task": materialize_task(self.storage, spec.task)})  # datasets -> files
        task, space = task_and_space(spec.space, spec.space_options, spec.task)
        data_info = task.describe_data()
        self.storage.set_job_fields(job.id, data_info=data_info)
        job.data_info = data_info
        device = self.storage.device(spec.device)
        meter = self.settings.meter(seed=spec.seed)
        with pinned_threads(self.settings.training_threads):
            preparation = space.prepare(task, cache_dir=self.settings.artifacts_dir / "cache",
                                        job_dir=self.settings.artifacts_dir / f"job-{job.id}", seed=spec.seed)
        space_options = {**spec.space_options, **task.space_options(), **preparation.options}
        if preparation.options:
            space = get_space(spec.space, space_options)
        latency_model = self._latency_model(job, spec, space, device)
        strategy = make_strategy(spec.strategy, StrategyConfig(
            study_name=job.study_name, storage_url=self.storage.url, directions=(task.direction, "minimize"),
            metric_names=(task.metric_name, "latency_ms"), seed=spec.seed, trials_budget=spec.budget.trials,
            parallel=spec.budget.parallel_trials or self.settings.max_parallel_trials or 2))
        rungs = rung_budgets(min_steps=spec.budget.min_train_steps, max_steps=spec.budget.train_steps,
                             reduction_factor=spec.budget.reduction_factor)
        ctx = JobContext(job, spec, task, space, space_options, device, meter, latency_model, strategy, rungs=rungs)
        self._record_preparation(ctx, preparation)
        return ctx

    def _latency_model(self, job: JobRow, spec: JobSpec, space: SearchSpace, device: DeviceProfile) -> LatencyModel:
        if self.latency_model_factory is not None:
            return self.latency_model_factory(space, device)
        model, info = job_latency_model(self.storage, self.device_runner, device=device, space=space,
                                        kind=spec.latency_model, plan=self.settings.profile_plan(seed=spec.seed))
        report = info["report"] or {}
        logger.info("job %s predicts latency with %s model %s (held-out MAPE %.2f%%, within 10%%: %.1f%%)",
                    job.id, info["kind"], info["id"], report.get("mape", float("nan")),
                    report.get("within_10pct", float("nan")))
        self.storage.set_job_fields(job.id, latency_model_id=info["id"])
        return model

    def measure(self, ctx: JobContext, archs: list[Arch]) -> list[LatencySample]:
        """Measure archs on the job's device, interleaved (there or here: see `DeviceRunner`)."""
        return self.device_runner.measure(ctx.device, ctx.space.name, ctx.space_options, archs, ctx.meter)

    def _record_preparation(self, ctx: JobContext, preparation: Preparation) -> None:
        """Store the prepared options, and the baseline with its latency measured on the job's device."""
        stored = ctx.job.preparation or {}
        baseline = preparation.baseline
        if baseline is not None:
            known = stored.get("baseline") or {}
            if known.get("arch") == baseline["arch"] and known.get("latency_ms") is not None:
                baseline = known  # a resumed job keeps the latency it measured first
            else:
                arch = Arch.from_dict(baseline["arch"])
                sample = self.measure(ctx, [arch])[0]
                prediction = ctx.latency_model.predict(arch)
                baseline = {**baseline, "latency_ms": sample.median_ms, "latency_measured": True,
                            "predicted_latency_ms": prediction.mean_ms}
                logger.info("job %s baseline: %s %.4f at %.3f ms (predicted %.3f ms)", ctx.job.id,
                            baseline.get("metric_name"), baseline.get("metric", float("nan")), sample.median_ms,
                            prediction.mean_ms)
        record = {"options": preparation.options, "baseline": baseline}
        if record != stored:
            self.storage.set_job_fields(ctx.job.id, preparation=record)
            ctx.job.preparation = record

    def _run_claimed(self, job_id: int, heartbeat: _Heartbeat) -> tuple[str, str]:
        ctx = self._context(self.storage.get_job(job_id))
        queue = self._reconcile(ctx, busy=set())
        deadline = time.monotonic() + ctx.spec.budget.max_minutes * 60
        cancelled = False
        results: deque[EvalResult] = deque()  # received, not yet recorded (the database may be away)
        with self.executor_factory() as executor:
            while True:
                try:
                    if heartbeat.lost.is_set():
                        raise ConflictError(f"job {job_id}: lease lost to another controller; stopping")
                    began, began_cpu = time.perf_counter(), time.thread_time()
                    while results:
                        self.recorder.record(ctx, results[0], queue)
                        results.popleft()
                    cancelled = cancelled or self.storage.cancel_requested(job_id)
                    if not cancelled and time.monotonic() < deadline:
                        self._fill(ctx, executor, queue)
                    ctx.stats.add(wall_s=time.perf_counter() - began, cpu_s=time.thread_time() - began_cpu)
                    if executor.in_flight == 0:
                        break
                    results.extend(executor.wait(timeout_s=max(1.0, self.settings.lease_ttl_s / 4)))
                except DatabaseUnavailableError as exc:
                    logger.warning("job %s: %s; waiting up to %.0f s for it", job_id, exc,
                                   self.settings.db_outage_timeout_s)
                    self.storage.wait_until_available(timeout_s=self.settings.db_outage_timeout_s)
                    logger.info("job %s: the database is back; reconciling", job_id)
                    busy = executor.trial_numbers() | {r.trial_number for r in results}
                    queue = self._reconcile(ctx, busy=busy)
            if cancelled:
                for number in executor.cancel_all():
                    self.recorder.fail_trial(ctx, self.storage.trial(job_id, number), "cancelled with its job")
        logger.info("job %s: controller overhead %.2f ms per trial (CPU %.2f ms) over %d trials (%d results)",
                    job_id, ctx.stats.overhead_ms_per_trial, ctx.stats.cpu_ms_per_trial, ctx.stats.trials,
                    ctx.stats.results)
        self.stats[job_id] = ctx.stats
        if cancelled:
            return "cancelled", f"cancelled after {self.storage.count_trials(job_id)} trials"
        return "completed", finish_job(self.storage, self.recorder, ctx, measure=self.measure,
                                       artifacts_dir=self.settings.artifacts_dir)

    # ---- proposing and dispatching ---------------------------------------------------------------
    def _reconcile(self, ctx: JobContext, *, busy: set[int]) -> deque[TrialRow]:
        """After a crash or a database outage: what was dispatched but never recorded runs again.

        Optuna trials asked but never stored as ours fail. Our tables are the record: a trial they hold
        as finished whose tell never reached Optuna (the process died between the two writes) is told
        now from the stored values. `busy` are trial numbers still in flight or waiting to be recorded.
        """
        trials = self.storage.trials(ctx.job.id)
        known = {t.optuna_number: t for t in trials}
        for number in ctx.strategy.open_numbers():
            trial = known.get(number)
            if trial is None:
                ctx.strategy.tell_failed(number)
            elif trial.state in FINISHED_TRIAL_STATES:
                self.recorder.tell(ctx, trial.optuna_number, trial.state, metric=trial.metric,
                                   latency_ms=trial.latency_ms)
        ctx.next_number = len(trials)
        self.recorder.restore_front(ctx, trials)
        ctx.rung_points = {}
        for t in trials:
            for entry in t.rungs or []:
                ctx.rung_points.setdefault(int(entry["steps"]), []).append(
                    Point(t.id, float(entry["metric"]), float(t.latency_ms or 0.0)))
        redo = [t for t in trials if t.state in ("pending", "running") and t.number not in busy]
        if redo:
            logger.info("job %s: resuming %d unfinished trials", ctx.job.id, len(redo))
        return deque(redo)

    def _slots(self, ctx: JobContext, executor: Executor) -> int:
        """This job's share of the executor: its own limit, the service's, and a fair share of the cluster
        among the jobs running now under any controller (re-read every few seconds)."""
        capacity = executor.slots
        now = time.monotonic()
        if now - ctx.running_jobs_at[0] > FAIR_SHARE_REFRESH_S:
            ctx.running_jobs_at = (now, max(1, self.storage.running_job_count()))
        share = max(1, math.ceil(capacity / ctx.running_jobs_at[1]))
        limits = [capacity, share, ctx.spec.budget.parallel_trials, self.settings.max_parallel_trials]
        return min(limit for limit in limits if limit)

    def _fill(self, ctx: JobContext, executor: Executor, queue: deque[TrialRow]) -> None:
        """Dispatch queued trials (resumed, retried, promoted), then new proposals, into the free slots.

        New trials are asked from the strategy as one batch for all free slots, predicted, and stored in one
        transaction already in their state: infeasible when predicted over the target (they take no slot),
        else running, and dispatched at once.
        """
        free = self._slots(ctx, executor) - executor.in_flight
        while free > 0 and queue:
            if self._predict_and_dispatch(ctx, queue.popleft(), executor):
                free -= 1
        while free > 0:
            dispatched = self._propose_and_dispatch(ctx, executor, count=free)
            if dispatched is None:
                return
            free -= dispatched

    def _infeasible_fields(self, ctx: JobContext, arch: Arch) -> tuple[dict[str, Any], str | None]:
        """The prediction's columns, and the reason when it is over the target by more than its uncertainty."""
        target = ctx.spec.latency_target_ms
        prediction = ctx.latency_model.predict(arch)
        fields = {"predicted_latency_ms": prediction.mean_ms, "predicted_latency_std_ms": prediction.std_ms}
        if prediction.mean_ms - prediction.std_ms > target:
            return fields, (f"predicted latency {prediction.mean_ms:.3f} ms is over the target {target} ms by more "
                            f"than its uncertainty ({prediction.std_ms:.3f} ms)")
        return fields, None

    def _propose_and_dispatch(self, ctx: JobContext, executor: Executor, *, count: int) -> int | None:
        """Ask, predict, store and dispatch up to `count` new trials; how many took a slot (None: budget spent)."""
        count = min(count, ctx.spec.budget.trials - ctx.next_number)
        if count <= 0:
            return None
        items, reasons = [], []
        now = utcnow()
        for optuna_number, arch in ctx.strategy.ask_batch(count, ctx.space.sample):
            fields, reason = self._infeasible_fields(ctx, arch)
            state = {"state": "infeasible", "finished_at": now, "error": reason} if reason else \
                {"state": "running", "started_at": now, "attempts": 1}
            items.append({"number": ctx.next_number + len(items), "optuna_number": optuna_number,
                          "arch": arch.to_dict(), "arch_hash": arch.hash, **fields, **state})
            reasons.append(reason)
        rows = self.storage.add_trials(job_id=ctx.job.id, items=items)
        ctx.next_number += len(rows)
        for row, reason in zip(rows, reasons):
            if reason:
                self.recorder.infeasible_stored(ctx, row)
            else:
                self._submit(ctx, row, executor)
        return sum(1 for reason in reasons if reason is None)

    def _predict_and_dispatch(self, ctx: JobContext, trial: TrialRow, executor: Executor) -> bool:
        """Dispatch a queued trial unless it is predicted infeasible (recorded so); True if it took a slot."""
        fields: dict[str, Any] = {}
        if trial.predicted_latency_ms is None or not trial.steps_done:
            fields, reason = self._infeasible_fields(ctx, Arch.from_dict(trial.arch))
            trial.predicted_latency_ms = fields["predicted_latency_ms"]
            if reason:
                self.recorder.infeasible(ctx, trial, error=reason, **fields)
                return False
        trial.attempts += 1
        trial.started_at = trial.started_at or utcnow()
        trial.state = "running"
        self.storage.update_trial(trial.id, state="running", started_at=trial.started_at, attempts=trial.attempts,
                                  **fields)
        self._submit(ctx, trial, executor)
        return True

    def _submit(self, ctx: JobContext, trial: TrialRow, executor: Executor) -> None:
        """Hand a trial stored as running to the executor, for its next rung (or its whole budget)."""
        steps_before = trial.steps_done or 0
        steps = next(b for b in ctx.rungs if b > steps_before)
        ctx.dispatched[trial.number] = trial
        artifact_dir = self.settings.artifacts_dir / f"job-{ctx.job.id}" / f"trial-{trial.number}"
        executor.submit(CandidateTask(
            job_id=ctx.job.id, trial_number=trial.number, space=ctx.space.name,
            space_options=dict(ctx.space_options), arch=trial.arch, task=ctx.spec.task.model_dump(),
            train_steps=steps, seed=ctx.spec.seed, artifact_dir=str(artifact_dir),
            threads=self.settings.training_threads, attempt=trial.attempts,
            resume_from=trial.weights_path if steps_before else None, steps_before=steps_before,
            schedule_steps=ctx.spec.budget.train_steps))
