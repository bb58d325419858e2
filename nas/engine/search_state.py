"""What the search phase keeps in memory about one job while it runs it (the database holds the rest)."""

from __future__ import annotations

from dataclasses import dataclass, field

from latency_models.base import LatencyModel
from nas.db.records import TrialRecord
from nas.engine.bound_job import BoundJob
from nas.engine.pareto import Point
from nas.engine.strategies.base import Strategy


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
class SearchState:
    """The search loop's state: the bound job and its strategy and predictor (fixed), and what changes as
    results arrive (the next trial number, the rung results, the front, the trials in flight)."""

    job: BoundJob
    strategy: Strategy
    latency_model: LatencyModel
    rungs: tuple[int, ...] = ()
    stats: ControllerStats = field(default_factory=ControllerStats)
    next_number: int = 0  # the next trial number (the controller is its job's single writer)
    rung_points: dict[int, list[Point]] = field(default_factory=dict)  # (metric, latency) per rung's steps
    front: list[Point] = field(default_factory=list)  # the Pareto front of the complete trials
    dispatched: dict[int, TrialRecord] = field(default_factory=dict)  # trial number -> its row, while in flight
    running_jobs_at: tuple[float, int] = (-1e9, 1)  # when the running jobs were counted, and how many
    arch_hashes: set[str] = field(default_factory=set)  # every arch this job has a trial of or discarded
    repeats_dropped: int = 0  # proposals of an arch the job already had, asked again instead
    infeasible_discarded: int = 0  # one-shot: proposals predicted over the target, told and not stored
    exhausted: bool = False  # one-shot: the strategy found no new arch under the target; the search ends
    fruitless_asks: int = 0  # one-shot: asks in a row that brought no new arch under the target
