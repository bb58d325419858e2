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
from typing import Any

from nas.db.models import TrialRow, utcnow
from nas.db.storage import Storage
from nas.engine.fidelity import decide
from nas.engine.search_state import SearchState
from nas.engine.pareto import Point, hypervolume, pareto_front
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

    def fail_trial(self, state: SearchState, trial: TrialRow, error: str, **fields: Any) -> None:
        self.storage.update_trial(trial.id, state="failed", error=error, finished_at=utcnow(), **fields)
        self.tell(state, trial.optuna_number, "failed", metric=None, latency_ms=None)
        state.stats.trials += 1
        self.on_event("trial", {"number": trial.number, "state": "failed", "error": error})

    def infeasible(self, state: SearchState, trial: TrialRow, *, error: str, **fields: Any) -> None:
        """Mark a stored trial infeasible (`fields`: its prediction), and tell the strategy."""
        self.storage.update_trial(trial.id, state="infeasible", finished_at=utcnow(), error=error, **fields)
        for key, value in fields.items():
            setattr(trial, key, value)
        self.infeasible_stored(state, trial)

    def infeasible_stored(self, state: SearchState, trial: TrialRow) -> None:
        """Tell the strategy about a trial stored as infeasible (with its predicted latency)."""
        self.tell(state, trial.optuna_number, "infeasible", metric=None, latency_ms=trial.predicted_latency_ms)
        state.stats.trials += 1
        self.on_event("trial", {"number": trial.number, "state": "infeasible",
                                "latency_ms": trial.predicted_latency_ms})

    # ---- results ---------------------------------------------------------------------------------
    def record(self, state: SearchState, result: EvalResult, queue: deque[TrialRow]) -> None:
        """Write one result; a trial that must run again (lost worker, promotion) goes on `queue`."""
        trial = state.dispatched.pop(result.trial_number, None) or self.storage.trial(state.job.job_id, result.trial_number)
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

    def _lost(self, state: SearchState, trial: TrialRow, result: EvalResult, queue: deque[TrialRow]) -> None:
        lost = trial.attempts - len(trial.rungs or [])  # dispatches that brought no rung result back
        limit = self.settings.trial_max_attempts
        if lost < limit:
            logger.warning("job %s trial %s: %s; dispatching it again (attempt %d of %d)", state.job.job_id,
                           trial.number, (result.error or "").splitlines()[0], lost + 1, limit)
            self.storage.update_trial(trial.id, state="pending", error=result.error, worker=result.worker)
            trial.state = "pending"
            queue.appendleft(trial)
            return
        self.fail_trial(state, trial, f"lost its worker {lost} times (HWNAS_TRIAL_MAX_ATTEMPTS={limit}); "
                                    f"last: {result.error}", worker=result.worker)

    def _trained(self, state: SearchState, trial: TrialRow, result: EvalResult, queue: deque[TrialRow], *,
                 metric: float) -> None:
        latency = trial.latency_ms or 0.0
        budget = state.job.spec.budget
        steps = result.steps_done or budget.train_steps
        fields: dict[str, Any] = {"metric": metric, "params": result.params, "train_loss": result.train_loss,
                                  "worker": result.worker, "metrics": result.extra.get("metrics"),
                                  "weights_path": result.weights_path, "steps_done": steps, "error": None}
        superseded = None  # the previous rung's files: removed once the database points past them
        if len(state.rungs) > 1:
            fields["rungs"] = [*(trial.rungs or []), {"steps": steps, "metric": metric}]
            if trial.weights_path and trial.steps_done and trial.weights_path != result.weights_path:
                superseded = (trial.weights_path, trial.steps_done)
        if steps < budget.train_steps:
            point = Point(trial.id, metric, latency)
            peers = state.rung_points.setdefault(steps, [])
            peers.append(point)
            decision = decide(point, peers, reduction_factor=budget.reduction_factor,
                              maximize_metric=state.job.maximize_metric)
            if decision.keep_going:
                self.storage.update_trial(trial.id, state="pending", **fields)
                self._remove_superseded(superseded)
                for key, value in fields.items():
                    setattr(trial, key, value)
                trial.state = "pending"
                queue.appendleft(trial)  # promotions first, as in ASHA
                return
            self.storage.update_trial(trial.id, state="stopped", finished_at=utcnow(), **{
                **fields, "error": f"stopped early at {steps} of {budget.train_steps} steps: place "
                                   f"{decision.position + 1} of the {decision.peers} trials at this rung, "
                                   f"{decision.kept} go on"})
            self._remove_superseded(superseded)
            state.strategy.tell_stopped(trial.optuna_number)
            state.stats.trials += 1
            self.on_event("trial", {"number": trial.number, "state": "stopped", "metric": metric,
                                    "steps": steps})
            return
        # Our row and the front first, in one transaction (the record a crash is recovered from), then the tell.
        self.add_to_front(state, Point(trial.id, metric, latency),
                          trial_fields={"state": "complete", "finished_at": utcnow(), **fields})
        self._remove_superseded(superseded)
        self.tell(state, trial.optuna_number, "complete", metric=metric, latency_ms=latency)
        state.stats.trials += 1
        self.on_event("trial", {"number": trial.number, "state": "complete", "metric": metric,
                                "latency_ms": latency})

    @staticmethod
    def _remove_superseded(superseded: tuple[str, int] | None) -> None:
        """Delete an earlier rung's files (weights path, steps) once the database points at the next rung's
        (a retry resumes from the rung the database records, so only files it no longer names go)."""
        from workers.evaluate import rung_files

        if superseded is None:
            return
        for path in rung_files(*superseded):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("could not remove %s: %s", path, exc)

    # ---- the Pareto front ------------------------------------------------------------------------
    def add_to_front(self, state: SearchState, point: Point, *, trial_fields: dict[str, Any]) -> None:
        """Store a complete trial (`trial_fields`), the front if the trial changed it, and the hypervolume, in
        one transaction."""
        front = pareto_front([*state.front, point], maximize_metric=state.job.maximize_metric)
        changed = any(p.key == point.key for p in front)
        volume = hypervolume(front if changed else state.front, reference=state.job.hypervolume_reference,
                             maximize_metric=state.job.maximize_metric)
        members = [(p.key, p.metric, p.latency_ms) for p in front] if changed else None
        self.storage.replace_front(state.job.job_id, members, trials_done=state.next_number, hypervolume=volume,
                                   trial_update=(point.key, trial_fields))
        if changed:
            state.front = front

    def restore_front(self, state: SearchState, trials: Sequence[TrialRow]) -> None:
        """Rebuild the in-memory front from the job's trials (on start, and after a database outage, when a
        result may have been stored without its front update); store it if the stored one differs."""
        self._rebuild_front(state, trials)
        if {p.key for p in state.front} != {member.trial_id for member, _ in self.storage.front(state.job.job_id)}:
            self._store_front(state, trials_done=len(trials))

    def update_front(self, state: SearchState) -> list[Point]:
        """Recompute the front from every complete trial in the database (latencies may have been re-measured)."""
        self._rebuild_front(state, self.storage.trials(state.job.job_id, states=("complete",)))
        self._store_front(state, trials_done=self.storage.count_trials(state.job.job_id))
        return state.front

    @staticmethod
    def _rebuild_front(state: SearchState, trials: Sequence[TrialRow]) -> None:
        points = [Point(t.id, float(t.metric), float(t.latency_ms or 0.0)) for t in trials
                  if t.state == "complete" and t.metric is not None]
        state.front = pareto_front(points, maximize_metric=state.job.maximize_metric)

    def _store_front(self, state: SearchState, *, trials_done: int) -> None:
        volume = hypervolume(state.front, reference=state.job.hypervolume_reference, maximize_metric=state.job.maximize_metric)
        self.storage.replace_front(state.job.job_id, [(p.key, p.metric, p.latency_ms) for p in state.front],
                                   trials_done=trials_done, hypervolume=volume)
