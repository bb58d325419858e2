"""Fast fakes for controller and strategy tests: a feature-sum latency model and a no-training evaluation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from latency_models.base import LatencyModel, LatencyPrediction
from latency_models.device import DeviceProfile
from latency_models.meter import MeterSettings
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace, get_space
from workers.types import CandidateTask, EvalResult


class FeatureSumLatencyModel(LatencyModel):
    """Latency as a fixed function of the arch's features: instant, exact and repeatable."""

    name = "feature-sum"

    def predict(self, arch: Arch) -> LatencyPrediction:
        self.check_arch(arch)
        return LatencyPrediction(mean_ms=fake_latency_ms(self.space, arch), std_ms=0.0)


def fake_latency_ms(space: SearchSpace, arch: Arch) -> float:
    features = space.encode(arch)
    return 0.1 + sum(features) / 1000.0


def feature_sum_factory(space: SearchSpace, device: DeviceProfile, meter: MeterSettings) -> LatencyModel:
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
