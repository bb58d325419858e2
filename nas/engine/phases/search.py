"""Phase `search`: the ask-predict-dispatch-record loop, until the budget (trials, minutes) is spent or the
job is cancelled.

The strategy proposes candidates in batches; each is predicted by the job's latency model, and those
predicted over the target by more than their uncertainty are stored infeasible without training; the rest
are dispatched to the executor, and each result is recorded (`nas.engine.recording`): trial row, the
strategy's tell, rung decisions (`nas.engine.fidelity`), the Pareto front and its hypervolume. Resumed
(after a crash or a database outage), `_reconcile` re-dispatches what was running and restores the front.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import replace

from latency_models.base import LatencyPrediction
from nas.db.models import utcnow
from nas.db.records import TrialRecord
from nas.db.storage import FINISHED_TRIAL_STATES, ProposedTrial
from nas.engine.fidelity import rung_budgets
from nas.engine.pareto import Point
from nas.engine.phases.base import JobRun, Phase
from nas.engine.search_state import SearchState
from nas.engine.strategies.base import StrategyConfig, make_strategy
from nas.engine.worker_tasks import candidate_task
from search_spaces.arch import Arch
from search_spaces.errors import ConflictError, DatabaseUnavailableError
from workers.executors.base import Executor
from workers.types import EvalResult

logger = logging.getLogger(__name__)
FAIR_SHARE_REFRESH_S = 2.0  # how often the jobs running on the cluster are counted
REPEAT_ASKS = 8  # rounds of asking again when a proposal repeats an arch the job has (see _propose_and_dispatch)
FRUITLESS_ASKS = 300  # one-shot: asks in a row with no new arch under the target that end the search (about 10 s)


class Search(Phase):
    name = "search"

    def run(self, run: JobRun) -> None:
        assert run.latency_model is not None, "the latency-model phase runs before the search"
        job, settings = run.job, run.settings
        budget = job.spec.budget
        strategy = make_strategy(job.spec.strategy, StrategyConfig(
            study_name=job.study_name, storage_url=run.storage.url, directions=(job.task.direction, "minimize"),
            metric_names=(job.task.metric_name, "latency_ms"), seed=job.spec.seed, trials_budget=budget.trials,
            parallel=budget.parallel_trials or settings.max_parallel_trials or 2))
        rungs = rung_budgets(min_steps=budget.min_train_steps, max_steps=budget.train_steps,
                             reduction_factor=budget.reduction_factor)
        state = run.search = SearchState(job, strategy, run.latency_model, rungs=rungs)
        _Loop(run, state).run()


class _Loop:
    """One search phase's loop over one executor."""

    def __init__(self, run: JobRun, state: SearchState) -> None:
        self.job_run = run
        self.state = state
        self.storage = run.storage
        self.settings = run.settings
        self.recorder = run.recorder

    def run(self) -> None:
        state, job_id = self.state, self.state.job.job_id
        queue = self._reconcile(busy=set())
        deadline = time.monotonic() + state.job.spec.budget.max_minutes * 60
        cancelled = False
        results: deque[EvalResult] = deque()  # received, not yet recorded (the database may be away)
        with self.job_run.executor_factory() as executor:
            while True:
                try:
                    if self.job_run.lease_lost.is_set():
                        raise ConflictError(f"job {job_id}: lease lost to another controller; stopping")
                    began, began_cpu = time.perf_counter(), time.thread_time()
                    while results:
                        self.recorder.record(state, results[0], queue)
                        results.popleft()
                    cancelled = cancelled or self.storage.cancel_requested(job_id)
                    if not cancelled and time.monotonic() < deadline:
                        self._fill(executor, queue)
                    state.stats.add(wall_s=time.perf_counter() - began, cpu_s=time.thread_time() - began_cpu)
                    if executor.in_flight == 0:
                        break
                    results.extend(executor.wait(timeout_s=max(1.0, self.settings.lease_ttl_s / 4)))
                except DatabaseUnavailableError as exc:
                    logger.warning("job %s: %s; waiting up to %.0f s for it", job_id, exc,
                                   self.settings.db_outage_timeout_s)
                    self.storage.wait_until_available(timeout_s=self.settings.db_outage_timeout_s)
                    logger.info("job %s: the database is back; reconciling", job_id)
                    busy = executor.trial_numbers() | {r.trial_number for r in results}
                    queue = self._reconcile(busy=busy)
            if cancelled:
                for number in executor.cancel_all():
                    self.recorder.fail_trial(state, self.storage.trial(job_id, number), "cancelled with its job")
        logger.info("job %s: controller overhead %.2f ms per trial (CPU %.2f ms) over %d trials (%d results)",
                    job_id, state.stats.overhead_ms_per_trial, state.stats.cpu_ms_per_trial, state.stats.trials,
                    state.stats.results)
        if cancelled:
            self.job_run.cancelled = True
            self.job_run.state = "cancelled"
            self.job_run.message = f"cancelled after {self.storage.count_trials(job_id)} trials"

    # ---- resuming --------------------------------------------------------------------------------
    def _reconcile(self, *, busy: set[int]) -> deque[TrialRecord]:
        """After a crash or a database outage: what was dispatched but never recorded runs again.

        Optuna trials asked but never stored as ours fail. Our tables are the record: a trial they hold
        as finished whose tell never reached Optuna (the process died between the two writes) is told
        now from the stored values. `busy` are trial numbers still in flight or waiting to be recorded.
        """
        state = self.state
        trials = self.storage.trials(state.job.job_id)
        known = {t.optuna_number: t for t in trials}
        for number in state.strategy.open_numbers():
            trial = known.get(number)
            if trial is None:
                state.strategy.tell_failed(number)
            elif trial.state in FINISHED_TRIAL_STATES:
                self.recorder.tell(state, trial.optuna_number, trial.state, metric=trial.metric,
                                   latency_ms=trial.latency_ms)
        state.next_number = len(trials)
        state.arch_hashes = {t.arch_hash for t in trials}
        self.recorder.restore_front(state, trials)
        state.rung_points = {}
        for t in trials:
            for entry in t.rungs or []:
                state.rung_points.setdefault(int(entry["steps"]), []).append(
                    Point(t.id, float(entry["metric"]), float(t.latency_ms or 0.0)))
        redo = [t for t in trials if t.state in ("pending", "running") and t.number not in busy]
        if redo:
            logger.info("job %s: resuming %d unfinished trials", state.job.job_id, len(redo))
        return deque(redo)

    # ---- proposing and dispatching ---------------------------------------------------------------
    def _slots(self, executor: Executor) -> int:
        """This job's share of the executor: its own limit, the service's, and a fair share of the cluster
        among the jobs running now under any controller (re-read every few seconds)."""
        state = self.state
        capacity = executor.slots
        now = time.monotonic()
        if now - state.running_jobs_at[0] > FAIR_SHARE_REFRESH_S:
            state.running_jobs_at = (now, max(1, self.storage.running_job_count()))
        share = max(1, math.ceil(capacity / state.running_jobs_at[1]))
        limits = [capacity, share, state.job.spec.budget.parallel_trials, self.settings.max_parallel_trials]
        return min(limit for limit in limits if limit)

    def _fill(self, executor: Executor, queue: deque[TrialRecord]) -> None:
        """Dispatch queued trials (resumed, retried, promoted), then new proposals, into the free slots.

        New trials are asked from the strategy as one batch for all free slots, predicted, and stored in one
        transaction already in their state: infeasible when predicted over the target (they take no slot),
        else running, and dispatched at once.
        """
        free = self._slots(executor) - executor.in_flight
        while free > 0 and queue:
            if self._predict_and_dispatch(queue.popleft(), executor):
                free -= 1
        while free > 0:
            dispatched = self._propose_and_dispatch(executor, count=free)
            if dispatched is None:
                return
            free -= dispatched

    def _predict(self, arch: Arch) -> tuple[LatencyPrediction, str | None]:
        """The prediction, and the reason when it is over the target by more than its uncertainty."""
        target = self.state.job.latency_target_ms
        prediction = self.state.latency_model.predict(arch)
        if prediction.mean_ms - prediction.std_ms > target:
            return prediction, (f"predicted latency {prediction.mean_ms:.3f} ms is over the target {target} ms by "
                                f"more than its uncertainty ({prediction.std_ms:.3f} ms)")
        return prediction, None

    def _propose_and_dispatch(self, executor: Executor, *, count: int) -> int | None:
        """Ask, predict, store and dispatch up to `count` new trials; how many took a slot (None: budget spent).

        A proposal of an arch the job has already seen (strategies repeat themselves: an evolution whose
        parents are alike, a sampler on a small space) is told to the strategy as failed and asked again, so a
        trial's budget goes to an arch not yet seen. In a one-shot search a proposal predicted over the target
        is not stored either: it is told to the strategy as infeasible (with its predicted latency) and asked
        again, as HAT discards such candidates before evaluation, so `budget.trials` counts candidates scored.
        Standalone gives up after `REPEAT_ASKS` rounds and stores what comes (a small space still runs its
        budget). One-shot, after `FRUITLESS_ASKS` asks in a row with no new arch under the target, ends its
        search (`state.exhausted`): the feasible archs the strategy finds are all scored, and more trials
        would only score repeats.
        """
        state = self.state
        count = min(count, state.job.spec.budget.trials - state.next_number)
        if count <= 0 or state.exhausted:
            return None
        one_shot = state.job.spec.search.mode == "one-shot"
        rounds = REPEAT_ASKS + 1
        proposals = []
        round_ = 0

        def more() -> bool:
            return state.fruitless_asks < FRUITLESS_ASKS if one_shot else round_ < rounds

        while len(proposals) < count and more():
            last = not one_shot and round_ == rounds - 1  # standalone: the round stored whatever it brings
            round_ += 1
            for optuna_number, arch in state.strategy.ask_batch(count - len(proposals), state.job.space.sample):
                if arch.hash in state.arch_hashes and not last:
                    state.strategy.tell_failed(optuna_number)
                    state.repeats_dropped += 1
                    state.fruitless_asks += 1
                    continue
                state.arch_hashes.add(arch.hash)
                prediction, reason = self._predict(arch)
                if reason and one_shot:
                    self.recorder.tell(state, optuna_number, "infeasible", metric=None, latency_ms=prediction.mean_ms)
                    state.infeasible_discarded += 1
                    state.fruitless_asks += 1
                    continue
                state.fruitless_asks = 0
                proposals.append(ProposedTrial(
                    number=state.next_number + len(proposals), optuna_number=optuna_number, arch=arch.to_dict(),
                    arch_hash=arch.hash, predicted_latency_ms=prediction.mean_ms,
                    predicted_latency_std_ms=prediction.std_ms, state="infeasible" if reason else "running",
                    error=reason))
        if not proposals:  # one-shot only: FRUITLESS_ASKS asks in a row brought no new arch under the target
            state.exhausted = True
            logger.info("job %s: no new arch under the target in %d asks; the search ends at %d candidates",
                        state.job.job_id, FRUITLESS_ASKS, state.next_number)
            return None
        trials = self.storage.add_trials(job_id=state.job.job_id, proposals=proposals)
        state.next_number += len(trials)
        for trial in trials:
            if trial.state == "infeasible":
                self.recorder.infeasible_stored(state, trial)
            else:
                self._submit(trial, executor)
        return sum(1 for trial in trials if trial.state == "running")

    def _predict_and_dispatch(self, trial: TrialRecord, executor: Executor) -> bool:
        """Dispatch a queued trial unless it is predicted infeasible (recorded so); True if it took a slot."""
        if trial.predicted_latency_ms is None or not trial.steps_done:
            prediction, reason = self._predict(Arch.from_dict(trial.arch))
            if reason:
                self.recorder.infeasible(self.state, trial, reason=reason, predicted_latency_ms=prediction.mean_ms,
                                         predicted_latency_std_ms=prediction.std_ms)
                return False
            trial = replace(trial, predicted_latency_ms=prediction.mean_ms, predicted_latency_std_ms=prediction.std_ms)
        trial = replace(trial, state="running", attempts=trial.attempts + 1, started_at=trial.started_at or utcnow())
        self.storage.start_trial(trial.id, attempts=trial.attempts, started_at=trial.started_at,
                                 predicted_latency_ms=trial.predicted_latency_ms,
                                 predicted_latency_std_ms=trial.predicted_latency_std_ms)
        self._submit(trial, executor)
        return True

    def _submit(self, trial: TrialRecord, executor: Executor) -> None:
        """Hand a trial stored as running to the executor, for its next rung (or its whole budget)."""
        state, job = self.state, self.state.job
        steps_before = trial.steps_done or 0
        steps = next(b for b in state.rungs if b > steps_before)
        state.dispatched[trial.number] = trial
        one_shot = job.spec.search.mode == "one-shot"  # inherited weights, evaluated as they are
        executor.submit(candidate_task(
            job, self.settings, trial, train_steps=0 if one_shot else steps, attempt=trial.attempts,
            resume_from=trial.weights_path if steps_before else None, steps_before=steps_before,
            schedule_steps=None if one_shot else job.spec.budget.train_steps,
            supernet_path=self.job_run.supernet_path if one_shot else None))
