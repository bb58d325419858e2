"""Phase `prepare`: record what the job's data is, and let the space prepare once per job.

The pruned-bert space fine-tunes (or reuses from its cache) a teacher and scores head and unit importance;
the options it makes (paths to those artifacts) are stored with the job, and the bound job is rebuilt on
them. A space with nothing to prepare returns no options. With an object store behind the artifacts
(`workers.artifact_store`) the cache is fetched before and shared after. Resumed: the space's own cache makes
a second preparation cheap, and the stored baseline is kept when its arch is unchanged (see `baseline`).
"""

from __future__ import annotations

from latency_models.meter import pinned_threads
from nas.engine.phases.base import JobRun, Phase
from search_spaces.base import Preparation, PreparedSpace

SUPERNETS = ("supernet-*",)  # the supernet phase's folders in the cache, fetched by their key alone


class Prepare(Phase):
    name = "prepare"

    def run(self, run: JobRun) -> None:
        job, settings = run.job, run.settings
        run.storage.record_data_description(job.job_id, job.task.describe_data())
        preparation = Preparation()  # a space without the capability has nothing to prepare
        if isinstance(job.space, PreparedSpace):
            cache_dir, job_dir = settings.artifacts_dir / "cache", settings.artifacts_dir / f"job-{job.job_id}"
            store = settings.artifact_store()
            # With an object store: what another process prepared (teachers, their importance) is found by the
            # space's own cache lookup, and what this one prepares is shared. Supernets are fetched by key.
            store.pull(cache_dir, exclude=SUPERNETS)
            with pinned_threads(settings.training_threads):
                preparation = job.space.prepare(job.task, cache_dir=cache_dir, job_dir=job_dir, seed=job.spec.seed,
                                                report=lambda text: run.storage.record_progress(job.job_id, text))
            store.push(cache_dir, exclude=SUPERNETS)
            store.push(job_dir)
        run.preparation = preparation
        run.job = job.with_preparation(preparation.options)
        if run.storage.get_job(job.job_id).preparation is None or dict(job.prepared_options) != preparation.options:
            run.storage.record_preparation(job.job_id, preparation.options)
