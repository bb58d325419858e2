"""The tasks a job hands to workers, built from the bound job in one place.

The supernet phase and the one-shot search, screening and final training send these; a benchmark that
retrains a stored finalist outside its job (an ablation) builds the same task here, so it trains exactly as
the job would: the same space options, task, seed, threads and supernet.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from workers.supernet_training import SUPERNET_FILE, SupernetTask, supernet_folder
from workers.types import CandidateTask

if TYPE_CHECKING:
    from nas.db.records import TrialRecord
    from nas.engine.bound_job import BoundJob
    from nas.settings import Settings


def supernet_task(job: BoundJob, settings: Settings) -> SupernetTask:
    """The job's supernet: its cache key is (space options, task, steps, seed, distillation)."""
    return SupernetTask(space=job.space.name, space_options=dict(job.space_options),
                        task=job.spec.task.model_dump(), steps=job.spec.search.supernet_steps, seed=job.spec.seed,
                        cache_dir=str(settings.artifacts_dir / "cache"), threads=settings.training_threads,
                        checkpoint_every_s=settings.supernet_checkpoint_s, distill=job.spec.search.supernet_distill,
                        artifacts=settings.artifact_location().to_dict())


def supernet_weights_path(job: BoundJob, settings: Settings) -> Path:
    """Where the job's trained supernet lies in the cache (the file exists once the phase has finished it)."""
    return supernet_folder(supernet_task(job, settings)) / SUPERNET_FILE


def trial_artifact_dir(job: BoundJob, settings: Settings, trial_number: int) -> Path:
    return settings.artifacts_dir / f"job-{job.job_id}" / f"trial-{trial_number}"


def candidate_task(job: BoundJob, settings: Settings, trial: TrialRecord, *, train_steps: int,
                   supernet_path: str | None, artifact_dir: Path | None = None, attempt: int = 1,
                   resume_from: str | None = None, steps_before: int = 0,
                   schedule_steps: int | None = None, keep_best_every_steps: int = 0) -> CandidateTask:
    """One trial's evaluation: `train_steps` 0 with a supernet scores its inherited weights; more trains it
    (from the supernet's slices when `supernet_path` is given, else from scratch or from `resume_from`)."""
    folder = artifact_dir if artifact_dir is not None else trial_artifact_dir(job, settings, trial.number)
    return CandidateTask(
        job_id=job.job_id, trial_number=trial.number, space=job.space.name, space_options=dict(job.space_options),
        arch=trial.arch, task=job.spec.task.model_dump(), train_steps=train_steps, seed=job.spec.seed,
        artifact_dir=str(folder), threads=settings.training_threads, attempt=attempt, resume_from=resume_from,
        steps_before=steps_before, schedule_steps=schedule_steps, supernet_path=supernet_path,
        artifacts=settings.artifact_location().to_dict(), keep_best_every_steps=keep_best_every_steps)
