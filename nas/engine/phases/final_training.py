"""Phase `final-training` (one-shot jobs): train the best front members under the target on, and keep both
figures.

The search scored candidates on inherited weights. The best `search.final_candidates` members under the
latency target of the front of inherited figures (`inherited_choice`; front members were measured on the
device by `finish`) are trained for `search.final_train_steps` (default `budget.train_steps`) from their
inherited weights (or from scratch with `search.final_from`), through the job's executor, and evaluated on
the validation data (with `search.final_eval_every_steps`, also before training and every that many steps,
keeping the best weights; `kept_step` in `metrics` says which). Each keeps its final metric as its `metric`
(the inherited one stays in `metrics` as `inherited_<metric>`, and `steps_done` says how far it trained);
the front is recomputed; `export` then picks among the finalists.

Inherited scores rank candidates only loosely (README: rank agreement), so with `search.screen_candidates`
the best that many under the target by inherited metric (front members or not; each measured on the device
first) train `search.screen_steps` each (a short rung, as successive halving's first), and the finalists are
the best of them by that metric (kept as `screened_<metric>`; a screened candidate that is not a finalist
keeps its screened figures, with `steps_done` saying so).

Resumed, nothing already screened is screened again and no finalist already trained is trained again: the
candidates are ordered by their inherited metric, which training does not change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace

from nas.db.records import TrainedResult, TrialRecord
from nas.engine.pareto import Point, pareto_front
from nas.engine.phases.base import JobRun, Phase
from nas.engine.worker_tasks import candidate_task

logger = logging.getLogger(__name__)


class TrainFinalists(Phase):
    name = "final-training"

    def applies(self, run: JobRun) -> bool:
        return not run.cancelled and run.job.spec.search.mode == "one-shot"

    def run(self, run: JobRun) -> None:
        assert run.search is not None, "the search runs before its finalists are trained"
        job, storage = run.job, run.storage
        search = job.spec.search
        steps = search.final_train_steps if search.final_train_steps is not None else job.spec.budget.train_steps
        inherited_key, screened_key = f"inherited_{job.task.metric_name}", f"screened_{job.task.metric_name}"
        trials = {t.id: t for t in storage.trials(job.job_id, states=("complete",))}
        # Resumed: what an interrupted run screened or trained stays chosen (the front may have moved since).
        if search.screen_candidates:
            pool = self._screening_pool(run, trials, inherited_key=inherited_key, screened_key=screened_key)
            storage.record_progress(job.job_id, f"final training: screening {len(pool)} candidates, "
                                                f"{search.screen_steps} steps each")
            self._train(run, [t for t in pool if _figure(t, screened_key) is None], trials,
                        steps=search.screen_steps, screening=True)
            ranked = [trials[t.id] for t in pool if _figure(trials[t.id], screened_key) is not None]
            ranked.sort(key=lambda t: self._order(run, _figure(t, screened_key)))
            chosen = ranked[:search.final_candidates]
        else:
            by_inherited = inherited_choice(trials.values(), metric_name=job.task.metric_name,
                                            target_ms=job.latency_target_ms, maximize_metric=job.maximize_metric)
            trained = sorted((t for t in trials.values() if t.steps_done == steps), key=lambda t: t.number)
            chosen = (trained + [t for t in by_inherited if t.steps_done != steps])[:search.final_candidates]
        storage.record_progress(job.job_id, f"final training: {len(chosen)} finalists, {steps} steps each")
        self._train(run, [t for t in chosen if t.steps_done != steps], trials, steps=steps, screening=False)
        finalists = [trials[t.id] for t in chosen if trials[t.id].steps_done == steps]
        run.front = run.recorder.update_front(run.search)
        run.finalists = [Point(t.id, float(t.metric), float(t.latency_ms or 0.0)) for t in finalists]

    def _screening_pool(self, run: JobRun, trials: dict[int, TrialRecord], *, inherited_key: str,
                        screened_key: str) -> list[TrialRecord]:
        """The best `search.screen_candidates` complete trials under the target by inherited metric, front
        members or not (the front is ranked by inherited scores, which are loose). Each is measured on the
        device first unless it was, and one measured over the target is replaced by the next best."""
        target_ms, wanted = run.job.latency_target_ms, run.job.spec.search.screen_candidates
        pool = sorted((t for t in trials.values() if _figure(t, screened_key) is not None), key=lambda t: t.number)
        ranked = sorted((t for t in trials.values() if _figure(t, screened_key) is None and t.metric is not None),
                        key=lambda t: self._order(run, _figure(t, inherited_key, t.metric)))
        ranked = [t for t in ranked if (t.latency_ms or 0.0) <= target_ms]
        while len(pool) < wanted and ranked:
            batch, ranked = ranked[:wanted - len(pool)], ranked[wanted - len(pool):]
            todo = [t for t in batch if t.measured_latency_ms is None]
            trials.update((t.id, t) for t in run.measure_trials(todo, purpose="screen-measure"))
            pool += [trials[t.id] for t in batch if (trials[t.id].latency_ms or 0.0) <= target_ms]
        return pool

    @staticmethod
    def _order(run: JobRun, metric: float | None) -> float:
        value = float(metric) if metric is not None else float("inf")
        return -value if run.job.maximize_metric and metric is not None else value

    @staticmethod
    def _train(run: JobRun, todo: Sequence[TrialRecord], trials: dict[int, TrialRecord], *, steps: int,
               screening: bool) -> None:
        """Train each of `todo` for `steps` from its inherited weights (or from scratch, `search.final_from`),
        record its figures and update `trials`; a failure is logged and leaves the trial as it was."""
        if not todo:
            return
        job, storage = run.job, run.storage
        search = job.spec.search
        metric_name = job.task.metric_name
        label = "screening" if screening else "final training"
        with run.executor_factory() as executor:
            for trial in todo:
                executor.submit(candidate_task(
                    job, run.settings, trial, train_steps=steps,
                    supernet_path=run.supernet_path if search.final_from == "inherited" else None,
                    keep_best_every_steps=0 if screening else search.final_eval_every_steps))
            by_number = {t.number: t for t in todo}
            while executor.in_flight:
                for result in executor.wait(timeout_s=5.0):
                    trial = by_number[result.trial_number]
                    if result.state != "complete" or result.metric is None:
                        logger.warning("job %s: candidate %s failed its %s: %s", job.job_id, trial.number, label,
                                       (result.error or "").splitlines()[:1])
                        continue
                    inherited = _figure(trial, f"inherited_{metric_name}", trial.metric)
                    screened = result.metric if screening else _figure(trial, f"screened_{metric_name}")
                    kept = result.extra.get("kept_step")
                    metrics = {**(result.extra.get("metrics") or {}), f"inherited_{metric_name}": float(inherited),
                               **({f"screened_{metric_name}": float(screened)} if screened is not None else {}),
                               **({"kept_step": float(kept)} if kept is not None else {})}
                    trained = TrainedResult(metric=result.metric, params=result.params, train_loss=result.train_loss,
                                            worker=result.worker, metrics=metrics, weights_path=result.weights_path,
                                            steps_done=steps)
                    storage.record_final_training(trial.id, trained)
                    trials[trial.id] = replace(trial, **trained.columns())


def inherited_choice(trials: Iterable[TrialRecord], *, metric_name: str, target_ms: float,
                     maximize_metric: bool) -> list[TrialRecord]:
    """The complete trials on the front of inherited figures (each trial's `inherited_<metric>`, or its metric
    where it was never trained on) and the latencies known (measured where measured), under `target_ms`, best
    first: the finalists a job without screening trains. Shared with the benchmark's screening ablation, which
    asks what a screened job would have trained without it."""
    by_id = {t.id: t for t in trials if t.metric is not None}
    key = f"inherited_{metric_name}"
    points = [Point(i, float(_figure(t, key, t.metric)), float(t.latency_ms or 0.0)) for i, t in by_id.items()]
    under = [p for p in pareto_front(points, maximize_metric=maximize_metric) if p.latency_ms <= target_ms]
    under.sort(key=lambda p: (-p.metric if maximize_metric else p.metric, p.latency_ms, p.key))
    return [by_id[p.key] for p in under]


def _figure(trial: TrialRecord, key: str, default: float | None = None) -> float | None:
    """One of the trial's stored figures (`inherited_<metric>`, `screened_<metric>`), or `default`."""
    value = (trial.metrics or {}).get(key)
    return float(value) if value is not None else default
