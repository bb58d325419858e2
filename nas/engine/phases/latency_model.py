"""Phase `latency-model`: load the job's latency predictor for its device and space, profiling the device
first when none is stored, and re-anchor it to the device's speed now (`nas.engine.latency`). Resumed: the
predictor stored by the first run is found."""

from __future__ import annotations

import logging

from nas.engine.latency import job_latency_model
from nas.engine.phases.base import JobRun, Phase

logger = logging.getLogger(__name__)


class ChooseLatencyModel(Phase):
    name = "latency-model"

    def run(self, run: JobRun) -> None:
        job = run.job
        if run.latency_model_factory is not None:
            run.latency_model = run.latency_model_factory(job.space, job.device)
            return
        model, info = job_latency_model(run.storage, run.device_runner, device=job.device, space=job.space,
                                        kind=job.spec.latency_model,
                                        plan=run.settings.profile_plan(seed=job.spec.seed))
        report = info["report"] or {}
        logger.info("job %s predicts latency with %s model %s (held-out MAPE %.2f%%, within 10%%: %.1f%%), "
                    "re-anchored x %.3f", job.job_id, info["kind"], info["id"], report.get("mape", float("nan")),
                    report.get("within_10pct", float("nan")), info["drift_factor"])
        if info["drift_factor"] != 1.0:
            run.storage.record_progress(job.job_id, f"latency model {info['id']} re-anchored: the device runs its "
                                                    f"reference x {info['drift_factor']:.3f} its profiled time")
        run.storage.record_latency_model(job.job_id, info["id"])
        run.latency_model = model
