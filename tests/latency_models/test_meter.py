from __future__ import annotations

import pytest
import torch

from latency_models.device import BUILTIN_DEVICES, DeviceProfile
from latency_models.measured import MeasuredLatencyModel
from latency_models.meter import LatencyMeter, MeterSettings, _quantile
from search_spaces.arch import Arch
from search_spaces.base import get_space
from search_spaces.errors import LatencyError
from tests.conftest import TINY_SPACE_OPTIONS


class Counting(torch.nn.Module):
    def __init__(self, log: list[str], name: str) -> None:
        super().__init__()
        self.log, self.name = log, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        return x * 2


def test_models_are_interleaved_and_runs_counted() -> None:
    log: list[str] = []
    meter = LatencyMeter(BUILTIN_DEVICES["cpu-1t"], MeterSettings(warmup=1, repeats=2, rounds=3))
    inputs = {"x": torch.ones(1)}
    samples = meter.measure_many([(Counting(log, "a"), inputs), (Counting(log, "b"), inputs)])
    timed = log[2:]  # after one warm-up each
    assert len(timed) == 12 and timed.count("a") == 6
    rounds = [timed[i:i + 4] for i in range(0, 12, 4)]
    assert all(sorted(r) == ["a", "a", "b", "b"] for r in rounds)  # every round visits both models
    for s in samples:
        assert s.runs == 6 and s.p10_ms <= s.median_ms <= s.p90_ms
        assert s.protocol["threads"] == 1 and s.protocol["repeats"] == 2 and s.protocol["interleaved"]


def test_threads_are_pinned_and_restored() -> None:
    before = torch.get_num_threads()
    seen: list[int] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return x

    LatencyMeter(BUILTIN_DEVICES["cpu-1t"], MeterSettings(warmup=0, repeats=1, rounds=1)).measure(
        Probe(), {"x": torch.ones(1)})
    assert seen == [1] and torch.get_num_threads() == before


def test_quantiles_match_numpy() -> None:
    import numpy as np

    values = sorted([5.0, 1.0, 3.0, 9.0, 7.0, 2.0])
    for q in (0.1, 0.5, 0.9):
        assert _quantile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_median_of_a_fixed_workload_is_stable() -> None:
    """Two measurements of one matmul agree within a loose band (noise is real; no absolute limits)."""
    layer = torch.nn.Linear(256, 256)
    meter = LatencyMeter(BUILTIN_DEVICES["cpu-1t"], MeterSettings(warmup=5, repeats=20, rounds=3))
    first, second = (meter.measure(layer, {"input": torch.randn(64, 256)}).median_ms for _ in range(2))
    assert 0.5 < first / second < 2.0


def test_measured_model_refuses_other_spaces_and_foreign_devices() -> None:
    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    model = MeasuredLatencyModel(space=space, device=BUILTIN_DEVICES["cpu-1t"],
                                 meter=MeterSettings(warmup=0, repeats=1, rounds=1))
    arch = space.make_arch(d_model=16, layers=[{"attn_heads": 2, "ffn": {"kind": "none"}}])
    prediction = model.predict(arch)
    assert prediction.measured and prediction.mean_ms > 0
    with pytest.raises(LatencyError, match="cannot predict"):
        model.predict(Arch(space="pruned-bert", version=1, config_json=arch.config_json))
    with pytest.raises(LatencyError, match="not this machine"):
        MeasuredLatencyModel(space=space, device=DeviceProfile(name="gpu", backend="onnxruntime-cpu"))
