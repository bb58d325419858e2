"""The controller: runs one job's phases under a lease, as the single writer of its results.

Flow: claim the job (a lease renewed by a heartbeat thread), bind the stored job once (`bound_job`), then
run `JOB_PHASES` in order (`nas.engine.phases`): prepare -> latency model -> baseline -> search -> finish
-> export. Each phase resumes from what the database holds, so a job whose controller died is continued by
the next one to claim it. The job ends completed (with the export phase's message), cancelled, or failed
(with the error).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from nas.db.records import JobRecord
from nas.db.storage import Storage
from nas.engine.bound_job import bind_job
from nas.engine.phases import JOB_PHASES, JobRun, LatencyModelFactory, Phase
from nas.engine.recording import EventHook, Recorder
from nas.engine.search_state import ControllerStats
from nas.settings import Settings
from search_spaces.errors import ConflictError, HwnasError
from workers.device_tasks import DeviceRunner
from workers.executors.base import Executor

logger = logging.getLogger(__name__)

__all__ = ["Controller", "LatencyModelFactory"]


@dataclass
class _Heartbeat:
    storage: Storage
    job_id: int
    owner: str
    ttl_s: float
    lost: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(self.ttl_s / 4):
            try:
                if not self.storage.renew_lease(self.job_id, owner=self.owner, ttl_s=self.ttl_s):
                    self.lost.set()
                    return
            except HwnasError as exc:  # a database hiccup: try again next beat, the lease has slack
                logger.warning("lease renewal for job %s failed: %s", self.job_id, exc)


class Controller:
    """Runs jobs from the database. `executor_factory` is called once per job run.

    `latency_model_factory` replaces the stored predictors (tests); `device_runner` decides where
    measurements run (a Ray node with the device's resource, or here); `phases` defaults to `JOB_PHASES`.
    """

    def __init__(self, storage: Storage, settings: Settings, *, executor_factory: Callable[[], Executor],
                 latency_model_factory: LatencyModelFactory | None = None, device_runner: DeviceRunner | None = None,
                 owner: str | None = None, on_event: EventHook | None = None,
                 phases: tuple[Phase, ...] = JOB_PHASES) -> None:
        self.storage = storage
        self.latency_model_factory = latency_model_factory
        self.device_runner = device_runner or DeviceRunner(use_ray=settings.executor == "ray",
                                                           ray_address=settings.ray_address,
                                                           artifacts=settings.artifact_location().to_dict())
        self.settings = settings
        self.executor_factory = executor_factory
        self.owner = owner or f"controller-{uuid.uuid4().hex[:12]}"
        self.recorder = Recorder(storage, settings, on_event=on_event or (lambda kind, data: None))
        self.phases = phases
        self.stats: dict[int, ControllerStats] = {}
        self.phase_seconds: dict[int, dict[str, float]] = {}  # per job run here: wall seconds of each phase run

    def run_job(self, job_id: int) -> JobRecord:
        """Claim and run `job_id` to its end; return its final row. Raise `ConflictError` if leased elsewhere."""
        ttl = self.settings.lease_ttl_s
        if not self.storage.claim_job(job_id, owner=self.owner, ttl_s=ttl):
            job = self.storage.get_job(job_id)
            if job.state == "running":
                left = (job.lease_expires_at or 0) - time.time()
                raise ConflictError(f"job {job_id} is being run by {job.lease_owner} (lease valid {left:.0f} s more); "
                                    "wait for it, or resume after its lease expires")
            raise ConflictError(f"job {job_id} is {job.state}; only queued or interrupted jobs can run")
        heartbeat = _Heartbeat(self.storage, job_id, self.owner, ttl)
        thread = threading.Thread(target=heartbeat.run, name=f"hwnas-lease-{job_id}", daemon=True)
        thread.start()
        try:
            state, message = self._run_phases(job_id, heartbeat.lost)
        except KeyboardInterrupt:
            self.storage.release_job(job_id, owner=self.owner, state="queued",
                                     message=f"interrupted; continue with `hwnas resume {job_id}`")
            raise
        except Exception as exc:
            logger.exception("job %s failed", job_id)
            text = str(exc) if isinstance(exc, HwnasError) else f"{type(exc).__name__}: {exc}"
            self.storage.release_job(job_id, owner=self.owner, state="failed", message=text)
        else:
            self.storage.release_job(job_id, owner=self.owner, state=state, message=message)
        finally:
            heartbeat.stop.set()
            thread.join(timeout=5)
        return self.storage.get_job(job_id)

    def _run_phases(self, job_id: int, lease_lost: threading.Event) -> tuple[str, str]:
        job = bind_job(self.storage, self.storage.get_job(job_id), store=self.settings.artifact_store())
        run = JobRun(storage=self.storage, settings=self.settings, job=job,
                     device_runner=self.device_runner, executor_factory=self.executor_factory,
                     recorder=self.recorder, lease_lost=lease_lost, latency_model_factory=self.latency_model_factory)
        seconds = self.phase_seconds.setdefault(job_id, {})
        for phase in self.phases:
            if phase.applies(run):
                began = time.perf_counter()
                phase.run(run)
                took = time.perf_counter() - began
                seconds[phase.name] = seconds.get(phase.name, 0.0) + took
                logger.info("job %s: phase %s took %.1f s", job_id, phase.name, took)
        if run.search is not None:
            self.stats[job_id] = run.search.stats
        return run.state, run.message
