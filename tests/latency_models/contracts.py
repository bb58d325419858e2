"""The contract every latency predictor passes: fit, predict, save and load, refuse what it was not fitted for."""

from __future__ import annotations

import pytest

from latency_models.base import FitSample, LatencyModel
from latency_models.device import DeviceProfile
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace, get_space, random_archs
from search_spaces.errors import LatencyError
from tests.conftest import TINY_SPACE_OPTIONS

DEVICE = DeviceProfile(name="cpu-1t", threads=1, seq_len=16, builtin=True)


def synthetic_latency_ms(space: SearchSpace, arch: Arch) -> float:
    """A latency that is an exact sum over blocks plus overhead (what the lookup table assumes)."""
    return 0.2 + sum(0.01 * sum(v for _, v in b.params) / 16 for b in space.blocks(arch)) + 0.03 * len(space.blocks(arch))


class PredictorContract:
    """Subclasses provide `make_model(space, device)` returning an unfitted model ready to `fit`."""

    def make_model(self, space: SearchSpace, device: DeviceProfile) -> LatencyModel:
        raise NotImplementedError

    @pytest.fixture()
    def space(self) -> SearchSpace:
        return get_space("sparse-transformer", TINY_SPACE_OPTIONS)

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
        other = get_space("sparse-transformer", {**TINY_SPACE_OPTIONS, "vocab_size": 1000})
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
