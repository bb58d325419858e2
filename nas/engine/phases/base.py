"""A job is a sequence of phases; each reads what the ones before it left on the `JobRun` and adds its own.

Every phase is resumable from the database: run again after a crash, it finds what it stored before
(preparation options, the baseline's measurement, the latency model, trials, measured latencies, the
checkpoint) and does only what is missing.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

from latency_models.base import LatencyModel
from latency_models.device import DeviceProfile
from latency_models.meter import LatencySample
from nas.db.records import TrialRecord
from nas.db.storage import Storage
from nas.engine.bound_job import BoundJob
from nas.engine.pareto import Point
from nas.engine.recording import Recorder
from nas.engine.search_state import SearchState
from nas.settings import Settings
from search_spaces.arch import Arch
from search_spaces.base import Preparation, SearchSpace
from workers.device_tasks import DeviceRunner
from workers.executors.base import Executor

LatencyModelFactory = Callable[[SearchSpace, DeviceProfile], LatencyModel]


@dataclass
class JobRun:
    """One controller's run of one job: the services phases use, and what each phase hands on.

    Outputs, by phase: `prepare` rebinds `job` with its options and sets `preparation`; `latency-model`
    sets `latency_model`; `supernet` (one-shot) sets `supernet_path`; `search` sets `search` (and
    `cancelled`); `finish` sets `front` (every member measured on the device); `final-training` (one-shot)
    sets `finalists` (trained on, with their final metrics); `export` sets `message`. `state` is the job's
    final state.
    """

    storage: Storage
    settings: Settings
    job: BoundJob
    device_runner: DeviceRunner
    executor_factory: Callable[[], Executor]
    recorder: Recorder
    lease_lost: threading.Event
    latency_model_factory: LatencyModelFactory | None = None
    preparation: Preparation | None = None
    latency_model: LatencyModel | None = None
    supernet_path: str | None = None
    search: SearchState | None = None
    cancelled: bool = False
    front: list[Point] = field(default_factory=list)
    finalists: list[Point] = field(default_factory=list)
    state: str = "completed"
    message: str = ""

    def measure(self, archs: list[Arch]) -> list[LatencySample]:
        """Measure archs on the job's device, interleaved (there or here: see `DeviceRunner`)."""
        meter = self.settings.meter(seed=self.job.spec.seed)
        return self.device_runner.measure(self.job.device, self.job.space.name, dict(self.job.space_options),
                                          archs, meter)

    def measure_trials(self, trials: Sequence[TrialRecord], *, purpose: str) -> list[TrialRecord]:
        """Measure trials' archs on the device (interleaved), store each sample and measurement, and return
        the trials with their measured latency."""
        if not trials:
            return []
        archs = [Arch.from_dict(t.arch) for t in trials]
        measured = []
        for trial, arch, sample in zip(trials, archs, self.measure(archs)):
            self.store_sample(trial.id, arch, sample, purpose=purpose)
            self.storage.record_measurement(trial.id, measured_latency_ms=sample.median_ms)
            measured.append(replace(trial, measured_latency_ms=sample.median_ms))
        return measured

    def store_sample(self, trial_id: int, arch: Arch, sample: LatencySample, *, purpose: str) -> None:
        space = self.job.space
        self.storage.add_latency_sample(device=self.job.device.name, space=space.name, space_version=space.version,
                                        arch_hash=arch.hash, arch=arch.to_dict(), sample=sample.to_dict(),
                                        purpose=purpose, job_id=self.job.job_id, trial_id=trial_id)


class Phase(ABC):
    """One step of a job. `applies` says whether it runs (by default: unless the job was cancelled)."""

    name: ClassVar[str]

    def applies(self, run: JobRun) -> bool:
        return not run.cancelled

    @abstractmethod
    def run(self, run: JobRun) -> None:
        """Do the phase's work for `run.job`, resuming from what the database holds; leave the output on `run`."""
