"""Phase `prepare`: record what the job's data is, and let the space prepare once per job.

The pruned-bert space fine-tunes (or reuses from its cache) a teacher and scores head and unit importance;
the options it makes (paths to those artifacts) are stored with the job, and the bound job is rebuilt on
them. A space with nothing to prepare returns no options. Resumed: the space's own cache makes a second
preparation cheap, and the stored baseline is kept when its arch is unchanged (see `baseline`).
"""

from __future__ import annotations

from latency_models.meter import pinned_threads
from nas.engine.phases.base import JobRun, Phase
from search_spaces.base import Preparation, PreparedSpace


class Prepare(Phase):
    name = "prepare"

    def run(self, run: JobRun) -> None:
        job, settings = run.job, run.settings
        run.storage.record_data_description(job.job_id, job.task.describe_data())
        preparation = Preparation()  # a space without the capability has nothing to prepare
        if isinstance(job.space, PreparedSpace):
            with pinned_threads(settings.training_threads):
                preparation = job.space.prepare(job.task, cache_dir=settings.artifacts_dir / "cache",
                                                job_dir=settings.artifacts_dir / f"job-{job.job_id}",
                                                seed=job.spec.seed)
        run.preparation = preparation
        run.job = job.with_preparation(preparation.options)
        if run.storage.get_job(job.job_id).preparation is None or dict(job.prepared_options) != preparation.options:
            run.storage.record_preparation(job.job_id, preparation.options)
