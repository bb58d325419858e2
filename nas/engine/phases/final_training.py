"""Phase `final-training` (one-shot jobs): train the best front members under the target on, and keep both
figures.

The search scored candidates on inherited weights. The best `search.final_candidates` front members under
the latency target (already measured on the device by `finish`) are trained for `search.final_train_steps`
(default `budget.train_steps`) from their inherited weights (or from scratch with `search.final_from`),
through the job's executor, and evaluated on the validation data. Each keeps its final metric as its
`metric` (the inherited one stays in `metrics` as `inherited_<metric>`, and `steps_done` says how far it
trained); the front is recomputed; `export` then picks among the finalists. Resumed, a finalist already
trained is not trained again.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from nas.db.records import TrainedResult
from nas.engine.pareto import Point
from nas.engine.phases.base import JobRun, Phase
from workers.types import CandidateTask

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
        under = [p for p in run.front if p.latency_ms <= job.latency_target_ms]
        under.sort(key=lambda p: -p.metric if job.maximize_metric else p.metric)
        trials = {t.id: t for t in storage.trials(job.job_id, states=("complete",))}
        chosen = [trials[p.key] for p in under[:search.final_candidates]]
        todo = [t for t in chosen if not t.steps_done]  # steps_done 0: inherited, not trained on yet
        storage.record_progress(job.job_id, f"final training: {len(chosen)} finalists, {steps} steps each")
        if todo:
            with run.executor_factory() as executor:
                for trial in todo:
                    executor.submit(CandidateTask(
                        job_id=job.job_id, trial_number=trial.number, space=job.space.name,
                        space_options=dict(job.space_options), arch=trial.arch, task=job.spec.task.model_dump(),
                        train_steps=steps, seed=job.spec.seed, threads=run.settings.training_threads,
                        artifact_dir=str(run.settings.artifacts_dir / f"job-{job.job_id}" / f"trial-{trial.number}"),
                        supernet_path=run.supernet_path if search.final_from == "inherited" else None,
                        artifacts=run.settings.artifact_location().to_dict()))
                by_number = {t.number: t for t in todo}
                while executor.in_flight:
                    for result in executor.wait(timeout_s=5.0):
                        trial = by_number[result.trial_number]
                        if result.state != "complete" or result.metric is None:
                            logger.warning("job %s: finalist %s failed its final training: %s", job.job_id,
                                           trial.number, (result.error or "").splitlines()[:1])
                            continue
                        metric_name = job.task.metric_name
                        metrics = {**(result.extra.get("metrics") or {}), f"inherited_{metric_name}": float(trial.metric)}
                        trained = TrainedResult(metric=result.metric, params=result.params, train_loss=result.train_loss,
                                                worker=result.worker, metrics=metrics, weights_path=result.weights_path,
                                                steps_done=steps)
                        storage.record_final_training(trial.id, trained)
                        trials[trial.id] = replace(trial, **trained.columns())
        finalists = [trials[t.id] for t in chosen if trials[t.id].steps_done]
        run.front = run.recorder.update_front(run.search)
        run.finalists = [Point(t.id, float(t.metric), float(t.latency_ms or 0.0)) for t in finalists]
