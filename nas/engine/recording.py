"""Writing a job's results: the trial rows, the strategy's tells, rung decisions and the Pareto front.

The controller calls `Recorder.record` for each evaluation result. A lost worker's trial goes back on
the queue (up to `HWNAS_TRIAL_MAX_ATTEMPTS`), a rung result is promoted or stopped (`nas.engine.fidelity`), a
final one completes the trial and updates the front. The front is kept in memory and updated
incrementally (a new point either is dominated by the current front, which leaves it and the
hypervolume unchanged, or joins it), so a result costs the same at trial 1,000 as at trial 10; the
whole front is recomputed from the database only when a job starts or ends.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from nas.db.records import TrainedResult, TrialRecord
from nas.db.storage import Storage
from nas.engine.fidelity import decide
from nas.engine.pareto import Point, hypervolume, pareto_front
from nas.engine.search_state import SearchState
from nas.errors import HwnasError
from nas.settings import Settings
from workers.types import EvalResult

logger = logging.getLogger(__name__)
EventHook = Callable[[str, dict[str, Any]], None]


class Recorder:
    """The single writer of one controller's results (each job's rows, tells and front)."""

    def __init__(self, storage: Storage, settings: Settings, *, on_event: EventHook) -> None:
        self.storage = storage
        self.settings = settings
        self.on_event = on_event

    # ---- the strategy ----------------------------------------------------------------------------
    def tell(self, state: SearchState, optuna_number: int, trial_state: str, *, metric: float | None,
             latency_ms: float | None) -> None:
        """Tell the strategy a finished trial: failures as failed; infeasible ones with the worst metric."""
        if trial_state == "failed":
            state.strategy.tell_failed(optuna_number)
            return
        if trial_state == "stopped":
            state.strategy.tell_stopped(optuna_number)
            return
        latency = latency_ms or 0.0
        value = metric if trial_state == "complete" and metric is not None else state.job.task.worst_metric()
        state.strategy.tell(optuna_number, [value, latency], constraint=latency - state.job.latency_target_ms)

    def fail_trial(self, state: SearchState, trial: TrialRecord, error: str, *, worker: str | None = None) -> None:
        self.storage.fail_trial(trial.id, error=error, worker=worker)
        self.tell(state, trial.optuna_number, "failed", metric=None, latency_ms=None)
        state.stats.trials += 1
        self.on_event("trial", {"number": trial.number, "state": "failed", "error": error})

    def infeasible(self, state: SearchState, trial: TrialRecord, *, reason: str, predicted_latency_ms: float,
                   predicted_latency_std_ms: float) -> None:
        """Mark a stored trial infeasible with its prediction, and tell the strategy."""
        self.storage.mark_infeasible(trial.id, reason=reason, predicted_latency_ms=predicted_latency_ms,
                                     predicted_latency_std_ms=predicted_latency_std_ms)
        self.infeasible_stored(state, replace(trial, predicted_latency_ms=predicted_latency_ms))

    def infeasible_stored(self, state: SearchState, trial: TrialRecord) -> None:
        """Tell the strategy about a trial stored as infeasible (with its predicted latency)."""
        self.tell(state, trial.optuna_number, "infeasible", metric=None, latency_ms=trial.predicted_latency_ms)
        state.stats.trials += 1
        self.on_event("trial", {"number": trial.number, "state": "infeasible",
                                "latency_ms": trial.predicted_latency_ms})

    # ---- results ---------------------------------------------------------------------------------
    def record(self, state: SearchState, result: EvalResult, queue: deque[TrialRecord]) -> None:
        """Write one result; a trial that must run again (lost worker, promotion) goes on `queue`."""
        trial = state.dispatched.pop(result.trial_number, None) or self.storage.trial(state.job.job_id,
                                                                                      result.trial_number)
        if trial.state not in ("running", "pending"):
            logger.warning("job %s trial %s: ignoring a second result", state.job.job_id, trial.number)
            return
        state.stats.results += 1
        if result.lost:
            self._lost(state, trial, result, queue)
        elif result.state == "failed" or result.metric is None or not math.isfinite(result.metric):
            self.fail_trial(state, trial, result.error or f"metric is {result.metric}; the candidate diverged",
                            worker=result.worker)
        else:
            self._trained(state, trial, result, queue, metric=result.metric)

    def _lost(self, state: SearchState, trial: TrialRecord, result: EvalResult, queue: deque[TrialRecord]) -> None:
        lost = trial.attempts - len(trial.rungs or [])  # dispatches that brought no rung result back
        limit = self.settings.trial_max_attempts
        if lost < limit:
            logger.warning("job %s trial %s: %s; dispatching it again (attempt %d of %d)", state.job.job_id,
                           trial.number, (result.error or "").splitlines()[0], lost + 1, limit)
            self.storage.requeue_trial(trial.id, error=result.error, worker=result.worker)
            queue.appendleft(replace(trial, state="pending", error=result.error, worker=result.worker))
            return
        self.fail_trial(state, trial, f"lost its worker {lost} times (HWNAS_TRIAL_MAX_ATTEMPTS={limit}); "
                                      f"last: {result.error}", worker=result.worker)

    def _trained(self, state: SearchState, trial: TrialRecord, result: EvalResult, queue: deque[TrialRecord], *,
                 metric: float) -> None:
        latency = trial.latency_ms or 0.0
        budget = state.job.spec.budget
        steps = result.steps_done if result.steps_done is not None else budget.train_steps  # 0: inherited
        superseded = None  # the previous rung's files: removed once the database points past them
        rungs = None
        if len(state.rungs) > 1:
            rungs = [*(trial.rungs or []), {"steps": steps, "metric": metric}]
            if trial.weights_path and trial.steps_done and trial.weights_path != result.weights_path:
                superseded = (trial.weights_path, trial.steps_done)
        trained = TrainedResult(metric=metric, params=result.params, train_loss=result.train_loss,
                                worker=result.worker, metrics=result.extra.get("metrics"),
                                weights_path=result.weights_path, steps_done=steps, rungs=rungs)
        if rungs is not None and steps < budget.train_steps:
            point = Point(trial.id, metric, latency)
            peers = state.rung_points.setdefault(steps, [])
            peers.append(point)
            decision = decide(point, peers, reduction_factor=budget.reduction_factor,
                              maximize_metric=state.job.maximize_metric)
            if decision.keep_going:
                self.storage.promote_trial(trial.id, trained)
                self._remove_superseded(superseded)
                queue.appendleft(replace(trial, state="pending", **trained.columns()))  # promotions first (ASHA)
                return
            self.storage.stop_trial(trial.id, trained, reason=(
                f"stopped early at {steps} of {budget.train_steps} steps: place {decision.position + 1} of the "
                f"{decision.peers} trials at this rung, {decision.kept} go on"))
            self._remove_superseded(superseded)
            state.strategy.tell_stopped(trial.optuna_number)
            state.stats.trials += 1
            self.on_event("trial", {"number": trial.number, "state": "stopped", "metric": metric,
                                    "steps": steps})
            return
        # Our row and the front first, in one transaction (the record a crash is recovered from), then the tell.
        self.complete(state, trial, trained, point=Point(trial.id, metric, latency))
        self._remove_superseded(superseded)
        self.tell(state, trial.optuna_number, "complete", metric=metric, latency_ms=latency)
        state.stats.trials += 1
        self.on_event("trial", {"number": trial.number, "state": "complete", "metric": metric,
                                "latency_ms": latency})

    def _remove_superseded(self, superseded: tuple[str, int] | None) -> None:
        """Delete an earlier rung's files (weights path, steps) once the database points at the next rung's
        (a retry resumes from the rung the database records, so only files it no longer names go), here and
        in the artifacts' object store."""
        from workers.evaluate import rung_files

        if superseded is None:
            return
        store = self.settings.artifact_store()
        for path in rung_files(*superseded):
            try:
                path.unlink(missing_ok=True)
                store.delete(path)
            except (OSError, HwnasError) as exc:
                logger.warning("could not remove %s: %s", path, exc)

    # ---- the Pareto front ------------------------------------------------------------------------
    def complete(self, state: SearchState, trial: TrialRecord, trained: TrainedResult, *, point: Point) -> None:
        """Store a complete trial, the front if the trial changed it, and the hypervolume, in one transaction."""
        front = pareto_front([*state.front, point], maximize_metric=state.job.maximize_metric)
        changed = any(p.key == point.key for p in front)
        volume = hypervolume(front if changed else state.front, reference=state.job.hypervolume_reference,
                             maximize_metric=state.job.maximize_metric)
        members = [(p.key, p.metric, p.latency_ms) for p in front] if changed else None
        self.storage.complete_trial(state.job.job_id, trial.id, trained, front=members, trials_done=state.next_number,
                                    hypervolume=volume)
        if changed:
            state.front = front

    def restore_front(self, state: SearchState, trials: Sequence[TrialRecord]) -> None:
        """Rebuild the in-memory front from the job's trials (on start, and after a database outage, when a
        result may have been stored without its front update); store it if the stored one differs."""
        self._rebuild_front(state, trials)
        if {p.key for p in state.front} != {member.trial.id for member in self.storage.front(state.job.job_id)}:
            self._store_front(state, trials_done=len(trials))

    def update_front(self, state: SearchState) -> list[Point]:
        """Recompute the front from every complete trial in the database (latencies may have been re-measured)."""
        self._rebuild_front(state, self.storage.trials(state.job.job_id, states=("complete",)))
        self._store_front(state, trials_done=self.storage.count_trials(state.job.job_id))
        return state.front

    @staticmethod
    def _rebuild_front(state: SearchState, trials: Sequence[TrialRecord]) -> None:
        points = [Point(t.id, float(t.metric), float(t.latency_ms or 0.0)) for t in trials
                  if t.state == "complete" and t.metric is not None]
        state.front = pareto_front(points, maximize_metric=state.job.maximize_metric)

    def _store_front(self, state: SearchState, *, trials_done: int) -> None:
        volume = hypervolume(state.front, reference=state.job.hypervolume_reference,
                             maximize_metric=state.job.maximize_metric)
        self.storage.replace_front(state.job.job_id, [(p.key, p.metric, p.latency_ms) for p in state.front],
                                   trials_done=trials_done, hypervolume=volume)
