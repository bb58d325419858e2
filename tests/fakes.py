"""Fast fakes for controller and strategy tests: a feature-sum latency model and a no-training evaluation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from collections.abc import Sequence
from typing import Any

from latency_models.base import FitSample, LatencyModel, LatencyPrediction
from latency_models.device import DeviceProfile
from latency_models.meter import LatencySample, MeterSettings
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace, get_space
from workers.types import CandidateTask, EvalResult


class FeatureSumLatencyModel(LatencyModel):
    """Latency as a fixed function of the arch's features: instant, exact and repeatable."""

    name = "feature-sum"

    def __init__(self, *, space: SearchSpace, device: DeviceProfile, std_ms: float = 0.0) -> None:
        super().__init__(space=space, device=device)
        self.fitted = True
        self.std_ms = std_ms

    def fit(self, samples: Sequence[FitSample]) -> None:
        pass

    def predict_raw(self, arch: Arch) -> LatencyPrediction:
        self.check_arch(arch)
        return LatencyPrediction(mean_ms=fake_latency_ms(self.space, arch), std_ms=self.std_ms)

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass


class FakeDeviceRunner:
    """Measures an arch as `factor` times its fake latency, instantly; remembers what it measured."""

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor
        self.measured: list[str] = []

    def measure(self, device: DeviceProfile, space: str, space_options: dict[str, Any], archs: Sequence[Arch],
                meter: MeterSettings) -> list[LatencySample]:
        space_obj = get_space(space, space_options)
        self.measured += [a.hash for a in archs]
        return [LatencySample(median_ms=self.factor * fake_latency_ms(space_obj, a), p10_ms=0.0, p90_ms=0.0, runs=1,
                              protocol={"fake": True, "device": device.name}) for a in archs]


def fake_latency_ms(space: SearchSpace, arch: Arch) -> float:
    features = space.encode(arch)
    return 0.1 + sum(features) / 1000.0


def feature_sum_factory(space: SearchSpace, device: DeviceProfile) -> LatencyModel:
    return FeatureSumLatencyModel(space=space, device=device)


def fake_metric(arch: Arch) -> float:
    return 1.0 + int(arch.hash[:4], 16) / 65535.0


def make_fake_evaluate(calls: list[int], *, fail: Callable[[CandidateTask], str | None] = lambda c: None,
                       metric: Callable[[Arch], float] = fake_metric) -> Callable[[CandidateTask], EvalResult]:
    """An evaluation that builds the arch and saves its (untrained) weights, with a made-up metric."""

    def evaluate(candidate: CandidateTask) -> EvalResult:
        from safetensors.torch import save_file

        calls.append(candidate.trial_number)
        error = fail(candidate)
        if error:
            return EvalResult(job_id=candidate.job_id, trial_number=candidate.trial_number, state="failed",
                              error=error, worker="fake")
        space = get_space(candidate.space, {**candidate.space_options, "vocab_size": 259})
        arch = Arch.from_dict(candidate.arch)
        model = space.build(arch, seed=candidate.seed)
        folder = Path(candidate.artifact_dir)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "weights.safetensors"))
        value = metric(arch)
        return EvalResult(job_id=candidate.job_id, trial_number=candidate.trial_number,
                          state="complete", metric=value,
                          params=sum(p.numel() for p in model.parameters()),
                          weights_path=str(folder / "weights.safetensors"), worker="fake")

    return evaluate


class PoolExecutor:
    """An executor with `slots` workers that finish in submission order, instantly; remembers the most
    candidates it ever held at once. `lose(candidate)` True makes that attempt come back as a lost worker."""

    name = "fake-pool"

    def __init__(self, evaluate: Callable[[CandidateTask], EvalResult], *, slots: int,
                 lose: Callable[[CandidateTask], bool] = lambda c: False) -> None:
        self._evaluate = evaluate
        self._slots = slots
        self._lose = lose
        self.held: list[CandidateTask] = []
        self.max_in_flight = 0
        self.submitted: list[CandidateTask] = []

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def in_flight(self) -> int:
        return len(self.held)

    def trial_numbers(self) -> set[int]:
        return {c.trial_number for c in self.held}

    def submit(self, candidate: CandidateTask) -> None:
        self.held.append(candidate)
        self.submitted.append(candidate)
        self.max_in_flight = max(self.max_in_flight, len(self.held))

    def wait(self, *, timeout_s: float | None = None) -> list[EvalResult]:
        if not self.held:
            return []
        candidate = self.held.pop(0)
        if self._lose(candidate):
            return [EvalResult(job_id=candidate.job_id, trial_number=candidate.trial_number, state="failed",
                               lost=True, worker="fake", error="worker lost: NodeDiedError: killed by the test")]
        return [self._evaluate(candidate)]

    def cancel_all(self) -> list[int]:
        numbers = [c.trial_number for c in self.held]
        self.held.clear()
        return numbers

    def shutdown(self) -> None:
        pass

    def __enter__(self) -> PoolExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
