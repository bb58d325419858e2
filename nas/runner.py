"""The controller loop: take queued jobs from the database and run up to `max_jobs` of them at once.

`hwnas serve` runs one beside the API; `hwnas controller` runs one alone, and several of those (on
several machines) can share one PostgreSQL database: a job is run by whichever controller claims its
lease first, and running jobs whose lease has expired (their controller died) are taken over, so a
restarted or second controller finishes what a dead one left. Progress is read from the database by
the API, so the loop needs no channel to it. Ray starts with the first job's executor, after that job's
profiling if it needs one: a Ray starting up beside a profiling run would inflate every timing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from nas.engine.controller import Controller, LatencyModelFactory
from nas.db.storage import Storage
from nas.settings import Settings
from search_spaces.errors import ConflictError, HwnasError
from workers.device_tasks import DeviceRunner
from workers.executors.base import Executor

logger = logging.getLogger(__name__)


class JobRunner:
    """Runs queued jobs in daemon threads, up to `max_jobs` at once, until `stop()`.

    With `exit_when_idle`, `wait()` returns once no job is running and none is queued (batch use, tests).
    """

    def __init__(self, storage: Storage, settings: Settings, *, executor_factory: Callable[[], Executor],
                 latency_model_factory: LatencyModelFactory | None = None,
                 device_runner: DeviceRunner | None = None, max_jobs: int | None = None,
                 exit_when_idle: bool = False, owner: str | None = None) -> None:
        self.controller = Controller(storage, settings, executor_factory=executor_factory, owner=owner,
                                     latency_model_factory=latency_model_factory, device_runner=device_runner)
        self.storage = storage
        self.poll_s = settings.runner_poll_s
        self.max_jobs = max_jobs or settings.controller_max_jobs
        self.exit_when_idle = exit_when_idle
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="hwnas-job-runner", daemon=True)
        self._thread.start()

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Stop looking for jobs; jobs under way go on only while the process lives."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the loop ends (`exit_when_idle`, or `stop()`); True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    @property
    def active_jobs(self) -> list[int]:
        """Jobs whose threads are still running (also after `stop()`)."""
        with self._lock:
            return sorted(job_id for job_id, thread in self._active.items() if thread.is_alive())

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._active = {k: t for k, t in self._active.items() if t.is_alive()}
                active = list(self._active)
            job_id = None
            if len(active) < self.max_jobs:
                try:
                    job_id = self.storage.next_queued_job(exclude=active)
                except HwnasError as exc:
                    logger.warning("controller loop: cannot read queued jobs: %s", exc)
            if job_id is not None:
                thread = threading.Thread(target=self._run, args=(job_id,), name=f"hwnas-job-{job_id}", daemon=True)
                with self._lock:
                    self._active[job_id] = thread
                thread.start()
                continue
            if self.exit_when_idle and not active and self._nothing_queued():
                return
            self._stop.wait(self.poll_s)

    def _nothing_queued(self) -> bool:
        try:
            return self.storage.count_jobs(states=("queued", "running")) == 0
        except HwnasError:
            return False

    def _run(self, job_id: int) -> None:
        try:
            job = self.controller.run_job(job_id)
            logger.info("job %s %s: %s", job_id, job.state, job.message)
        except ConflictError as exc:  # another controller took it first
            logger.info("job %s: %s", job_id, exc)
            self._stop.wait(self.poll_s)
        except Exception:
            logger.exception("controller loop: job %s could not run", job_id)
            self._stop.wait(self.poll_s)
