"""Honest uncertainty: a predictor that states 1% while it errs by 10% gets its standard deviations scaled so
that one covers about 68% of errors on archs it has not seen, and two about 95%."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from latency_models.base import FitSample, LatencyModel, LatencyPrediction, ProfileData
from latency_models.calibration import std_scale
from latency_models.device import BUILTIN_DEVICES
from search_spaces.arch import Arch
from search_spaces.base import get_space, random_archs
from tests.conftest import TINY_SPACE_OPTIONS
from tests.fakes import fake_latency_ms

SPACE = get_space("sparse-transformer", TINY_SPACE_OPTIONS)


class OverconfidentModel(LatencyModel):
    """Predicts the noiseless latency exactly, with a stated standard deviation of 1%."""

    name = "overconfident"

    def fit(self, samples: Sequence[FitSample]) -> None:
        self.fitted = True

    def predict_raw(self, arch: Arch) -> LatencyPrediction:
        mean = fake_latency_ms(self.space, arch)
        return LatencyPrediction(mean_ms=mean, std_ms=0.01 * mean)

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass


def _noisy(archs: list[Arch], seed: int) -> list[FitSample]:
    rng = random.Random(seed)
    return [FitSample(a, fake_latency_ms(SPACE, a) * (1 + rng.gauss(0, 0.10))) for a in archs]


def test_calibrated_deviations_cover_68_and_95_percent_of_unseen_errors() -> None:
    device = BUILTIN_DEVICES["cpu-1t"]
    archs = random_archs(SPACE, count=500, seed=3)
    train, holdout = _noisy(archs[:200], seed=1), _noisy(archs[200:], seed=2)
    model = OverconfidentModel.from_profile(space=SPACE, device=device,
                                            data=ProfileData(samples=train, overhead_count=20)).model

    def coverage(times: float) -> float:
        hits = 0
        for sample in holdout:
            p = model.predict(sample.arch)
            hits += abs(p.mean_ms - sample.latency_ms) <= times * p.std_ms
        return 100.0 * hits / len(holdout)

    assert coverage(1) < 15 and coverage(2) < 25  # as stated: 1% against 10% errors
    model.std_scale = std_scale(OverconfidentModel, space=SPACE, device=device,
                                data=ProfileData(samples=train, overhead_count=20))
    assert 7 < model.std_scale < 14
    assert 58 <= coverage(1) <= 78 and 89 <= coverage(2) <= 99
    restored = OverconfidentModel.load(model.save(), space=SPACE, device=device)  # kept with the model
    assert restored.std_scale == model.std_scale


def test_a_drift_factor_scales_mean_and_deviation() -> None:
    model = OverconfidentModel(space=SPACE, device=BUILTIN_DEVICES["cpu-1t"])
    model.fitted = True
    arch = random_archs(SPACE, count=1, seed=0)[0]
    before = model.predict(arch)
    model.drift_factor = 1.25
    after = model.predict(arch)
    assert after.mean_ms == before.mean_ms * 1.25 and after.std_ms == before.std_ms * 1.25
