"""Contract suites for latency models and latency meters, shipped for plug-in authors.

    from latency_models.testing import LatencyModelContract, MeterContract

    class TestMyModel(LatencyModelContract):
        def make_model(self, space, device): return MyModel(space=space, device=device)

    class TestMyMeter(MeterContract):
        @pytest.fixture()
        def device(self): return DeviceProfile(name="mine", backend="my-backend", threads=1)

Needs pytest and torch.
"""

from __future__ import annotations

from typing import Any

import pytest

from latency_models.base import FitSample, LatencyModel
from latency_models.device import DeviceProfile
from latency_models.meter import METERS, MeterSettings, make_meter
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace, get_space, random_archs
from search_spaces.errors import LatencyError
from search_spaces.testing import SMALL_SPACE_OPTIONS

DEVICE = DeviceProfile(name="cpu-1t", threads=1, seq_len=16, builtin=True)


def synthetic_latency_ms(space: SearchSpace, arch: Arch) -> float:
    """A latency that is an exact sum over blocks plus overhead (what the lookup table assumes)."""
    blocks = space.blocks(arch)
    return 0.2 + sum(0.01 * sum(v for _, v in b.params) / 16 for b in blocks) + 0.03 * len(blocks)


class LatencyModelContract:
    """Every latency model kind passes this suite: fit, predict, save and load, refuse what it was not fitted
    for. Subclasses provide `make_model(space, device)` returning an unfitted model ready to `fit`."""

    def make_model(self, space: SearchSpace, device: DeviceProfile) -> LatencyModel:
        raise NotImplementedError(f"{type(self).__name__} must build an unfitted latency model")

    @pytest.fixture()
    def space(self) -> SearchSpace:
        return get_space("sparse-transformer", SMALL_SPACE_OPTIONS)

    @pytest.fixture()
    def fitted(self, space: SearchSpace) -> LatencyModel:
        model = self.make_model(space, DEVICE)
        archs = random_archs(space, count=60, seed=0)
        model.fit([FitSample(a, synthetic_latency_ms(space, a)) for a in archs])
        return model

    def test_predicts_held_out_archs_closely(self, space: SearchSpace, fitted: LatencyModel) -> None:
        train = {a.hash for a in random_archs(space, count=60, seed=0)}
        held_out = random_archs(space, count=30, seed=1, exclude=train)
        errors = []
        for arch in held_out:
            p = fitted.predict(arch)
            assert p.mean_ms > 0 and p.std_ms >= 0
            truth = synthetic_latency_ms(space, arch)
            errors.append(abs(p.mean_ms - truth) / truth)
        assert sum(errors) / len(errors) < 0.15

    def test_save_and_load_round_trip(self, space: SearchSpace, fitted: LatencyModel) -> None:
        again = LatencyModel.load(fitted.save(), space=space, device=DEVICE)
        assert type(again) is type(fitted)
        for arch in random_archs(space, count=10, seed=4):
            assert again.predict(arch) == fitted.predict(arch)

    def test_refuses_another_space_version(self, space: SearchSpace, fitted: LatencyModel) -> None:
        arch = random_archs(space, count=1, seed=2)[0]
        with pytest.raises(LatencyError, match="cannot predict"):
            fitted.predict(Arch(space=arch.space, version=arch.version + 1, config_json=arch.config_json))

    def test_load_refuses_another_device_or_signature(self, space: SearchSpace, fitted: LatencyModel) -> None:
        payload = fitted.save()
        with pytest.raises(LatencyError, match="device profile"):
            LatencyModel.load(payload, space=space, device=DEVICE.model_copy(update={"threads": 2}))
        other = get_space("sparse-transformer", {**SMALL_SPACE_OPTIONS, "vocab_size": 1000})
        with pytest.raises(LatencyError, match="latency signature"):
            LatencyModel.load(payload, space=other, device=DEVICE)
        with pytest.raises(LatencyError, match="cannot be read"):
            LatencyModel.load(b"not a model", space=space, device=DEVICE)

    def test_unfitted_model_refuses_to_predict_or_save(self, space: SearchSpace) -> None:
        model = self.make_model(space, DEVICE)
        with pytest.raises(LatencyError, match="not fitted"):
            model.predict(random_archs(space, count=1, seed=0)[0])
        with pytest.raises(LatencyError, match="not fitted"):
            model.save()

    def test_too_few_samples_is_a_clear_error(self, space: SearchSpace) -> None:
        model = self.make_model(space, DEVICE)
        with pytest.raises(LatencyError, match="at least"):
            model.fit([FitSample(a, 1.0) for a in random_archs(space, count=2, seed=0)])


class MeterContract:
    """Every latency meter passes this suite. Provide a `device` fixture: a profile of the meter's backend
    (skip the class where that backend is absent)."""

    FAST = MeterSettings(warmup=1, repeats=3, min_rounds=2, max_rounds=3, seed=0)

    @staticmethod
    def _model(width: int, *, depth: int = 1) -> tuple[Any, dict[str, Any]]:
        """An MLP of `depth` hidden layers of `width`. The big model is both wider and deeper: a GPU at batch
        8 times launches, not arithmetic, so only more layers make a model reliably slower there."""
        import torch

        torch.manual_seed(0)

        class Mlp(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                hidden = [m for _ in range(depth - 1) for m in (torch.nn.Linear(width, width), torch.nn.ReLU())]
                self.layers = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), *hidden,
                                                  torch.nn.Linear(width, 64))

            def forward(self, x: Any) -> Any:
                return self.layers(x)

        return Mlp(), {"x": torch.randn(8, 64)}

    def test_the_registry_gives_this_meter_for_its_backend(self, device: DeviceProfile) -> None:
        meter = make_meter(device, self.FAST)
        assert isinstance(meter, METERS.get(device.backend)) and meter.device == device

    def test_a_sample_per_model_in_order_with_its_protocol(self, device: DeviceProfile) -> None:
        meter = make_meter(device, self.FAST)
        small, big = self._model(8), self._model(1024, depth=8)
        samples = meter.measure_many([small, big, small])
        assert len(samples) == 3 and all(s.median_ms > 0 and s.p10_ms <= s.median_ms <= s.p90_ms for s in samples)
        assert samples[1].median_ms > max(samples[0].median_ms, samples[2].median_ms)
        protocol = samples[0].protocol
        assert protocol["backend"] == device.backend and protocol["device"] == device.name
        assert protocol["statistic"] == "median" and protocol["interleaved"] is True
        rounds = protocol["rounds"]
        assert self.FAST.min_rounds <= rounds <= self.FAST.max_rounds
        assert all(s.runs == rounds * self.FAST.repeats for s in samples)
        assert meter.measure_many([]) == []
