"""The serve loop: a background thread that takes queued jobs from the database and runs them one by one.

`hwnas serve` starts one beside the API. It also takes over running jobs whose lease has expired (their
controller died), so a restarted server finishes what it left. Progress is read from the database by the
API, so the loop needs no channel to it. Ray starts with the first job's executor, after that job's
profiling if it needs one: a Ray starting up beside a profiling run would inflate every timing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from nas.controller import Controller, LatencyModelFactory
from nas.db.storage import Storage
from nas.settings import Settings
from search_spaces.errors import ConflictError, HwnasError
from workers.device_tasks import DeviceRunner
from workers.executors.base import Executor

logger = logging.getLogger(__name__)


class JobRunner:
    """Runs queued jobs in a daemon thread until `stop()`; one job at a time per runner."""

    def __init__(self, storage: Storage, settings: Settings, *, executor_factory: Callable[[], Executor],
                 latency_model_factory: LatencyModelFactory | None = None,
                 device_runner: DeviceRunner | None = None) -> None:
        self.controller = Controller(storage, settings, executor_factory=executor_factory,
                                     latency_model_factory=latency_model_factory, device_runner=device_runner)
        self.storage = storage
        self.poll_s = settings.runner_poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="hwnas-job-runner", daemon=True)
        self._thread.start()

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Stop looking for jobs; a job under way finishes its current trial only if the process lives on."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self.storage.next_queued_job()
            except HwnasError as exc:
                logger.warning("serve loop: cannot read queued jobs: %s", exc)
                job_id = None
            if job_id is None:
                self._stop.wait(self.poll_s)
                continue
            try:
                job = self.controller.run_job(job_id)
                logger.info("job %s %s: %s", job_id, job.state, job.message)
            except ConflictError as exc:  # another controller took it first
                logger.info("job %s: %s", job_id, exc)
                self._stop.wait(self.poll_s)
            except Exception:
                logger.exception("serve loop: job %s could not run", job_id)
                self._stop.wait(self.poll_s)
