"""One stored job resolved, once, into what the engine works with: its spec, task, space, device and target.

The controller binds a job when it starts running it (and again after the job's preparation, whose options
the space takes); exporting a checkpoint binds the stored job the same way. Nothing else builds a task or a
space from a stored spec. The read side (API, CLI) needs only the objective, which `job_objective` gives
without building the task.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from latency_models.device import DeviceProfile
from nas.db.storage import Storage
from nas.spec import JobSpec
from workers.tasks.base import Objective, task_objective

if TYPE_CHECKING:
    from nas.db.records import JobRecord
    from search_spaces.base import SearchSpace
    from workers.artifact_store import ArtifactStore
    from workers.tasks.base import Task


@dataclass(frozen=True)
class BoundJob:
    """A stored job, resolved: `spec` has its `dataset:` references replaced by the stored files, `space` and
    `space_options` include what the task gives the space (vocabulary, labels) and what the job's preparation
    made (a teacher, importance scores)."""

    job_id: int
    study_name: str
    spec: JobSpec
    task: Task
    space: SearchSpace
    space_options: Mapping[str, Any]
    device: DeviceProfile
    prepared_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def maximize_metric(self) -> bool:
        return self.task.direction == "maximize"

    @property
    def latency_target_ms(self) -> float:
        return self.spec.latency_target_ms

    @property
    def hypervolume_reference(self) -> tuple[float, float]:
        """The worst point of the (metric, latency) plane a front's hypervolume is measured from."""
        return (self.task.worst_metric(), self.spec.latency_target_ms)

    def with_preparation(self, options: Mapping[str, Any]) -> BoundJob:
        """The same job with the space rebuilt on the options its preparation made."""
        if dict(options) == dict(self.prepared_options):
            return self
        return _bind(self.job_id, self.study_name, self.spec, self.device, prepared=options)


def _bind(job_id: int, study_name: str, spec: JobSpec, device: DeviceProfile, *,
          prepared: Mapping[str, Any]) -> BoundJob:
    from workers.evaluate import task_and_space

    task, space = task_and_space(spec.space, {**spec.space_options, **prepared}, spec.task)
    options = {**spec.space_options, **task.space_options(), **prepared}
    return BoundJob(job_id=job_id, study_name=study_name, spec=spec, task=task, space=space,
                    space_options=MappingProxyType(options), device=device,
                    prepared_options=MappingProxyType(dict(prepared)))


def bind_job(storage: Storage, job: JobRecord, *, store: ArtifactStore | None = None) -> BoundJob:
    """Resolve a stored job (with the options its preparation stored, if it got that far). With an object
    store behind the artifacts, the files it names (datasets, prepared teachers) are fetched first."""
    from nas.datasets import materialize_task

    spec = job.job_spec.model_copy(update={"task": materialize_task(storage, job.job_spec.task)})  # datasets -> files
    if store is not None:
        store.pull_referenced(spec.task.model_dump(), dict(job.prepared_options or {}))
    return _bind(job.id, job.study_name, spec, storage.device(spec.device), prepared=job.prepared_options)


def job_objective(job: JobRecord) -> Objective:
    """A stored job's objective (metric name and direction), without building its task."""
    return _objective(json.dumps(job.spec["task"], sort_keys=True))


@lru_cache(maxsize=4096)
def _objective(task_json: str) -> Objective:
    return task_objective(json.loads(task_json))
