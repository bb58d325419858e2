"""Phase `export`: export the best front member whose measured latency meets the target, and say so.

An export requested over the API may be writing the same folder: `export_once` shares its lock, and a
checkpoint already exported (by a first run of this phase, or on request) is reused.
"""

from __future__ import annotations

import logging

from nas.engine.checkpoints import checkpoint_dir, export_once
from nas.engine.pareto import best_under
from nas.engine.phases.base import JobRun, Phase

logger = logging.getLogger(__name__)


class ExportBest(Phase):
    name = "export"

    def run(self, run: JobRun) -> None:
        job, storage = run.job, run.storage
        target = job.latency_target_ms
        done = storage.count_trials(job.job_id)
        # One-shot: only finalists hold trained weights; the other front members were scored on inherited ones.
        candidates = run.finalists if job.spec.search.mode == "one-shot" else run.front
        best_point = best_under(candidates, max_latency_ms=target, maximize_metric=job.maximize_metric)
        if best_point is None:
            fastest = min((p.latency_ms for p in run.front), default=None)
            detail = f"the fastest trained trial measured {fastest:.3f} ms" if fastest else "no trial was trained"
            run.message = (f"{done} trials; no trial met the latency target of {target} ms when measured on "
                           f"{job.device.name!r} ({detail}); no checkpoint exported: raise latency_target_ms or "
                           "allow smaller archs")
            return
        best = storage.trial_by_id(best_point.key)
        export_once(storage, job, trial=best, latency_ms=best_point.latency_ms,
                    out_dir=checkpoint_dir(run.settings.artifacts_dir, job.job_id, best.number),
                    store=run.settings.artifact_store())
        logger.info("job %s exported trial %s", job.job_id, best.number)
        run.message = (f"{done} trials; best under {target} ms: trial {best.number} with {job.task.metric_name} "
                       f"{best.metric:.4f} at {best_point.latency_ms:.3f} ms")
        discarded = run.search.infeasible_discarded if run.search is not None else 0
        if discarded:
            run.message += f" ({discarded} proposals predicted over the target discarded before scoring)"
        if run.search is not None and run.search.exhausted:
            run.message += ("; the search ended early: the strategy proposed no new arch under the target "
                            "(raise latency_target_ms or widen the space for more)")
