"""The end of a job: re-measure the Pareto front on the device, then export the best trial under the target."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from latency_models.meter import LatencySample
from nas.engine.checkpoints import checkpoint_dir, export_once
from nas.db.models import TrialRow
from nas.db.storage import Storage
from nas.engine.job_context import JobContext
from nas.engine.pareto import best_under
from nas.engine.recording import Recorder
from search_spaces.arch import Arch

logger = logging.getLogger(__name__)
Measure = Callable[[JobContext, list[Arch]], list[LatencySample]]


def store_sample(storage: Storage, ctx: JobContext, trial: TrialRow, sample: LatencySample, *, purpose: str) -> None:
    storage.add_latency_sample(device=ctx.device.name, space=ctx.space.name, space_version=ctx.space.version,
                               arch_hash=trial.arch_hash, arch=trial.arch, sample=sample.to_dict(),
                               purpose=purpose, job_id=ctx.job.id, trial_id=trial.id)


def finish_job(storage: Storage, recorder: Recorder, ctx: JobContext, *, measure: Measure, artifacts_dir: Path) -> str:
    """Re-measure the front on the device (interleaved), then export the best trial under the target; return
    the job's closing message.

    Re-measured latencies can move other trials onto the front; those are re-measured in turn, so every
    member of the final front carries a fresh measurement.
    """
    trials = {t.id: t for t in storage.trials(ctx.job.id, states=("complete",))}
    target = ctx.spec.latency_target_ms
    front = recorder.update_front(ctx)
    while True:
        todo = [trials[p.key] for p in front if trials[p.key].measured_latency_ms is None]
        if not todo:
            break
        for trial, sample in zip(todo, measure(ctx, [Arch.from_dict(t.arch) for t in todo])):
            store_sample(storage, ctx, trial, sample, purpose="front-remeasure")
            storage.update_trial(trial.id, measured_latency_ms=sample.median_ms)
            trial.measured_latency_ms = sample.median_ms
        front = recorder.update_front(ctx)
    best_point = best_under(front, max_latency_ms=target, maximize_metric=ctx.maximize_metric)
    done = storage.count_trials(ctx.job.id)
    if best_point is None:
        fastest = min((p.latency_ms for p in front), default=None)
        detail = f"the fastest trained trial measured {fastest:.3f} ms" if fastest else "no trial was trained"
        return (f"{done} trials; no trial met the latency target of {target} ms when measured on "
                f"{ctx.device.name!r} ({detail}); no checkpoint exported: raise latency_target_ms or allow "
                "smaller archs")
    best = storage.trial(ctx.job.id, trials[best_point.key].number)
    # An export requested over the API may be writing the same folder: export_once shares its lock.
    export_once(storage, job_id=ctx.job.id, trial=best, latency_ms=best_point.latency_ms,
                out_dir=checkpoint_dir(artifacts_dir, ctx.job.id, best.number))
    logger.info("job %s exported trial %s", ctx.job.id, best.number)
    return (f"{done} trials; best under {target} ms: trial {best.number} with {ctx.task.metric_name} "
            f"{best.metric:.4f} at {best_point.latency_ms:.3f} ms")
