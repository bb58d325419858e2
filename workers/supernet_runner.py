"""Where a job's supernet trains: a Ray task (one worker, the job's training threads as CPUs) when the
service runs candidates on Ray, else in this process.

On Ray, the controller waits on the task, reads the step and loss the worker writes beside its checkpoint
(`progress.json`) to report them, and cancels the task at a cancel or a lost lease. A worker that dies (its
node lost, its process killed) is replaced by a new task that resumes from the last checkpoint, up to
`attempts` times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from search_spaces.errors import ExecutionError
from workers.artifact_store import ArtifactStore
from workers.supernet_training import (ProgressHook, SupernetOutcome, SupernetTask, read_progress, run_supernet_task,
                                       supernet_folder)

logger = logging.getLogger(__name__)


class SupernetRunner:
    def __init__(self, *, use_ray: bool, ray_address: str | None = None, attempts: int = 3,
                 poll_s: float = 2.0) -> None:
        self.use_ray = use_ray
        self.ray_address = ray_address
        self.attempts = attempts
        self.poll_s = poll_s

    def run(self, job: SupernetTask, *, progress: ProgressHook | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> SupernetOutcome:
        """The finished supernet (trained, resumed or found cached); InterruptedError when `should_stop`."""
        if not self.use_ray:
            return run_supernet_task(job, progress=progress, should_stop=should_stop)
        from workers.executors.ray_executor import ensure_ray, import_ray

        ray = import_ray()
        if not ray.is_initialized():
            ensure_ray(address=self.ray_address)
        remote = ray.remote(num_cpus=job.threads, max_retries=0)(run_supernet_task)
        folder = supernet_folder(job)
        store = ArtifactStore.of(job.artifacts)
        last_step = -1
        for attempt in range(1, self.attempts + 1):
            ref = remote.remote(job)
            while True:
                done, _ = ray.wait([ref], timeout=self.poll_s)
                seen = read_progress(folder, store)
                if progress is not None and seen is not None and seen[0] != last_step:
                    last_step = seen[0]
                    progress(*seen)
                if done:
                    try:
                        return ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died: resume from the checkpoint
                        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                        if isinstance(exc, ray.exceptions.RayTaskError):
                            raise ExecutionError(f"supernet training failed: {first}") from exc
                        logger.warning("supernet training lost its worker (attempt %d of %d): %s", attempt,
                                       self.attempts, first)
                        break
                if should_stop():
                    ray.cancel(ref, force=True)
                    raise InterruptedError("supernet training stopped (its last checkpoint is kept)")
        raise ExecutionError(f"supernet training lost its worker {self.attempts} times; resume the job to go on "
                             "from its last checkpoint")
