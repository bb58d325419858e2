"""The learned predictor: gradient boosting on the space's encoded features (nn-Meter, HELP style).

Three scikit-learn `GradientBoostingRegressor`s share the features `SearchSpace.encode(arch)`: one
for the mean (squared error) and two quantile models (10th and 90th percentile) whose spread gives
the uncertainty, `(q90 - q10) / 2.563` (the normal distribution's 10-90 range in standard
deviations). All three fit the logarithm of the latency, so errors are relative across the range.
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


@register_latency_model("learned")
class LearnedLatencyModel(LatencyModel):
    def __init__(self, *, space: SearchSpace, device: DeviceProfile, n_estimators: int = 300,
                 learning_rate: float = 0.05, max_depth: int = 3, seed: int = 0) -> None:
        super().__init__(space=space, device=device)
        self.params = {"n_estimators": n_estimators, "learning_rate": learning_rate, "max_depth": max_depth,
                       "subsample": 0.8, "random_state": seed}
        self.models: dict[str, Any] = {}
        self.feature_names: list[str] = space.feature_names()

    def fit(self, samples: Sequence[FitSample]) -> None:
        import numpy as np
        from sklearn.ensemble import GradientBoostingRegressor

        self.check_samples(samples, minimum=MIN_FIT_SAMPLES)
        features = np.array([self.space.encode(s.arch) for s in samples])
        target = np.log(np.array([s.latency_ms for s in samples]))
        self.models = {
            "mean": GradientBoostingRegressor(loss="squared_error", **self.params).fit(features, target),
            "q10": GradientBoostingRegressor(loss="quantile", alpha=0.1, **self.params).fit(features, target),
            "q90": GradientBoostingRegressor(loss="quantile", alpha=0.9, **self.params).fit(features, target),
        }
        self.fitted = True

    def _predict_log(self, features: Any) -> tuple[Any, Any, Any]:
        import sklearn

        # Features come from `encode` (finite by construction): skip scikit-learn's per-call checks.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return (self.models["mean"].predict(features), self.models["q10"].predict(features),
                    self.models["q90"].predict(features))

    def predict_raw(self, arch: Arch) -> LatencyPrediction:
        return self.predict_raw_many([arch])[0]

    def predict_raw_many(self, archs: Sequence[Arch]) -> list[LatencyPrediction]:
        import numpy as np

        for arch in archs:
            self.check_arch(arch)
        if not archs:
            return []
        mean, q10, q90 = self._predict_log(np.array([self.space.encode(a) for a in archs], dtype=np.float32))
        result = []
        for m, lo, hi in zip(mean, q10, q90):
            low, high = sorted((math.exp(float(lo)), math.exp(float(hi))))
            result.append(LatencyPrediction(mean_ms=math.exp(float(m)), std_ms=(high - low) / Z_10_90))
        return result

    def state(self) -> dict[str, Any]:
        return {"models": self.models, "feature_names": self.feature_names, "params": self.params}

    def load_state(self, state: dict[str, Any]) -> None:
        if state["feature_names"] != self.space.feature_names():
            raise LatencyError("stored learned latency model was fitted on other features; profile again")
        self.models = dict(state["models"])
        self.params = dict(state["params"])
