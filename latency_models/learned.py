"""The learned predictor: gradient boosting on the space's encoded features (nn-Meter, HELP style).

A scikit-learn `GradientBoostingRegressor` (squared error) on the features `SearchSpace.encode(arch)`,
fitted to the logarithm of the latency, so that errors are relative across the range.

The uncertainty is relative too: one share of the predicted latency for every arch, a nominal 5% that the
profiler replaces by the share that covers 68% of the model's cross-fitted errors (`calibration.py`). Until
2026-12-04 two quantile models (10th and 90th percentile) gave each arch its own spread, `(q90 - q10) /
2.563`; those spreads were no guide to where the model errs (calibrated the same way, 58% and 76% of
held-out archs within one and two deviations on the demo's profile, aim 68% and 95%). A model stored before
then has no `relative_std` and keeps its quantile models and per-arch spreads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from latency_models.base import FitSample, LatencyModel, LatencyPrediction, register_latency_model
from latency_models.device import DeviceProfile
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace
from search_spaces.errors import LatencyError

MIN_FIT_SAMPLES = 10
Z_10_90 = 2.5631
NOMINAL_RELATIVE_STD = 0.05  # what an uncalibrated model states; the profiler's calibration replaces it


@register_latency_model("learned")
class LearnedLatencyModel(LatencyModel):
    def __init__(self, *, space: SearchSpace, device: DeviceProfile, n_estimators: int = 300,
                 learning_rate: float = 0.05, max_depth: int = 3, seed: int = 0) -> None:
        super().__init__(space=space, device=device)
        self.params = {"n_estimators": n_estimators, "learning_rate": learning_rate, "max_depth": max_depth,
                       "subsample": 0.8, "random_state": seed}
        self.models: dict[str, Any] = {}
        self.feature_names: list[str] = space.feature_names()
        self.relative_std: float | None = None  # the predicted std over the predicted mean (None: per-arch)

    def fit(self, samples: Sequence[FitSample]) -> None:
        import numpy as np
        from sklearn.ensemble import GradientBoostingRegressor

        self.check_samples(samples, minimum=MIN_FIT_SAMPLES)
        features = np.array([self.space.encode(s.arch) for s in samples])
        target = np.log(np.array([s.latency_ms for s in samples]))
        self.models = {"mean": GradientBoostingRegressor(loss="squared_error", **self.params).fit(features, target)}
        self.relative_std = NOMINAL_RELATIVE_STD
        self.fitted = True

    def _predict(self, name: str, features: Any) -> Any:
        import sklearn

        # Features come from `encode` (finite by construction): skip scikit-learn's per-call checks.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return self.models[name].predict(features)

    def predict_raw(self, arch: Arch) -> LatencyPrediction:
        return self.predict_raw_many([arch])[0]

    def predict_raw_many(self, archs: Sequence[Arch]) -> list[LatencyPrediction]:
        import numpy as np

        for arch in archs:
            self.check_arch(arch)
        if not archs:
            return []
        features = np.array([self.space.encode(a) for a in archs], dtype=np.float32)
        means_ms = [math.exp(float(m)) for m in self._predict("mean", features)]
        if self.relative_std is not None:
            return [LatencyPrediction(mean_ms=ms, std_ms=ms * self.relative_std) for ms in means_ms]
        result = []  # a model stored before 2026-12-04: the spread of its quantile models, arch by arch
        for ms, lo, hi in zip(means_ms, self._predict("q10", features), self._predict("q90", features)):
            low, high = sorted((math.exp(float(lo)), math.exp(float(hi))))
            result.append(LatencyPrediction(mean_ms=ms, std_ms=(high - low) / Z_10_90))
        return result

    def state(self) -> dict[str, Any]:
        return {"models": self.models, "feature_names": self.feature_names, "params": self.params,
                "relative_std": self.relative_std}

    def load_state(self, state: dict[str, Any]) -> None:
        if state["feature_names"] != self.space.feature_names():
            raise LatencyError("stored learned latency model was fitted on other features; profile again")
        self.models = dict(state["models"])
        self.params = dict(state["params"])
        self.relative_std = state.get("relative_std")  # absent in models stored before 2026-12-04
