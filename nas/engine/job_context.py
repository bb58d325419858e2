"""What the controller keeps in memory about one job while it runs it (the database holds the rest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from latency_models.base import LatencyModel
from latency_models.device import DeviceProfile
from latency_models.meter import MeterSettings
from nas.db.models import JobRow, TrialRow
from nas.engine.pareto import Point
from nas.spec import JobSpec
from nas.engine.strategies.base import Strategy
from search_spaces.base import SearchSpace
from workers.tasks.base import Task


@dataclass
class ControllerStats:
    """Time the controller spends on a job outside waiting for workers (asking, predicting, writing): wall
    time, and the CPU time of the controller's thread in it.

    `trials` counts trials that reached a final state here (complete, infeasible, stopped, failed);
    `results` counts evaluation results received (a trial trained in rungs brings one per rung).
    """

    overhead_s: float = 0.0  # wall time
    cpu_s: float = 0.0  # the controller thread's CPU time in the same spans (waiting for the database excluded)
    trials: int = 0
    results: int = 0

    def add(self, *, wall_s: float, cpu_s: float) -> None:
        self.overhead_s += wall_s
        self.cpu_s += cpu_s

    @property
    def overhead_ms_per_trial(self) -> float:
        return 1000.0 * self.overhead_s / max(1, self.trials)

    @property
    def cpu_ms_per_trial(self) -> float:
        return 1000.0 * self.cpu_s / max(1, self.trials)


@dataclass
class JobContext:
    job: JobRow
    spec: JobSpec
    task: Task
    space: SearchSpace
    space_options: dict[str, Any]
    device: DeviceProfile
    meter: MeterSettings
    latency_model: LatencyModel
    strategy: Strategy
    rungs: tuple[int, ...] = ()
    stats: ControllerStats = field(default_factory=ControllerStats)
    next_number: int = 0  # the next trial number (the controller is its job's single writer)
    rung_points: dict[int, list[Point]] = field(default_factory=dict)  # (metric, latency) per rung's steps
    front: list[Point] = field(default_factory=list)  # the Pareto front of the complete trials
    dispatched: dict[int, TrialRow] = field(default_factory=dict)  # trial number -> its row, while in flight
    running_jobs_at: tuple[float, int] = (-1e9, 1)  # when the running jobs were counted, and how many

    @property
    def maximize_metric(self) -> bool:
        return self.task.direction == "maximize"

    @property
    def hypervolume_reference(self) -> tuple[float, float]:
        return (self.task.worst_metric(), self.spec.latency_target_ms)
