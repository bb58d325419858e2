"""Phase `baseline`: measure the baseline a space's preparation names (the unpruned teacher of pruned-bert)
on the job's device, and predict it, so the job's results can be compared with it. Runs only for spaces
whose preparation has a baseline. Resumed: a stored baseline with the same arch keeps its first measurement."""

from __future__ import annotations

import logging
from dataclasses import replace

from nas.db.records import Baseline
from nas.engine.phases.base import JobRun, Phase
from search_spaces.arch import Arch

logger = logging.getLogger(__name__)


class MeasureBaseline(Phase):
    name = "baseline"

    def applies(self, run: JobRun) -> bool:
        return not run.cancelled and run.preparation is not None and run.preparation.baseline is not None

    def run(self, run: JobRun) -> None:
        assert run.preparation is not None and run.preparation.baseline is not None and run.latency_model
        baseline = Baseline.from_dict(run.preparation.baseline)
        known = run.storage.get_job(run.job.job_id).baseline
        if known is not None and known.arch == baseline.arch and known.latency_ms is not None:
            return  # a resumed job keeps the latency it measured first
        arch = Arch.from_dict(baseline.arch)
        sample = run.measure([arch])[0]
        prediction = run.latency_model.predict(arch)
        measured = replace(baseline, latency_ms=sample.median_ms, latency_measured=True,
                           predicted_latency_ms=prediction.mean_ms)
        logger.info("job %s baseline: %s %.4f at %.3f ms (predicted %.3f ms)", run.job.job_id,
                    measured.metric_name, measured.metric if measured.metric is not None else float("nan"),
                    sample.median_ms, prediction.mean_ms)
        run.storage.record_baseline(run.job.job_id, measured)
