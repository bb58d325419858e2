"""Honest uncertainty: a predictor's standard deviations scaled so that they cover its real errors.

A model's own spread (the lookup table's in-sample residuals, the learned model's quantile regressions)
understates its error on archs it has not seen: on `pruned-bert` a lookup table stated about 3% while it
missed six archs by 9 to 14%. `std_scale` cross-fits the kind on the profile's training samples (each fold
predicted by the kind fitted without it, as `from_profile` fits it) and returns the factor that makes one
predicted standard deviation cover 68.27% of those errors (the share a normal error would). The profiler
stores the factor with the model, and reports how many held-out archs fall within one and two calibrated
standard deviations (aim: 68% and 95%). Ten folds, since each fold's model is fitted on less than the
profile's model is and so errs more: with four folds (a quarter held out) the calibration over-covered the
learned model's held-out errors (78% within one deviation on the demo's profile), with ten 71%.
"""

from __future__ import annotations

import logging
import random

from latency_models.base import LatencyModel, ProfileData
from latency_models.device import DeviceProfile
from search_spaces.base import SearchSpace
from search_spaces.errors import LatencyError

logger = logging.getLogger(__name__)
ONE_SIGMA = 0.6827


def cross_fitted_errors(model_cls: type[LatencyModel], *, space: SearchSpace, device: DeviceProfile,
                        data: ProfileData, folds: int = 4, seed: int = 0) -> list[tuple[float, float]]:
    """(|measured - predicted|, predicted std) for every training sample, each predicted by the kind fitted
    on the other folds."""
    samples = list(data.samples)
    folds = max(2, min(folds, len(samples)))
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    result = []
    for fold in range(folds):
        held = set(order[fold::folds])
        kept = [s for i, s in enumerate(samples) if i not in held]
        fold_data = ProfileData(samples=kept, overhead_count=min(data.overhead_count, len(kept)),
                                block_ms=data.block_ms)
        fitted = model_cls.from_profile(space=space, device=device, data=fold_data).model
        for i in sorted(held):
            p = fitted.predict_raw(samples[i].arch)
            result.append((abs(samples[i].latency_ms - p.mean_ms), p.std_ms))
    return result


def std_scale(model_cls: type[LatencyModel], *, space: SearchSpace, device: DeviceProfile, data: ProfileData,
              folds: int = 10) -> float:
    """The factor for the kind's standard deviations (1.0 when it cannot be cross-fitted: too few samples)."""
    try:
        errors = cross_fitted_errors(model_cls, space=space, device=device, data=data, folds=folds)
    except LatencyError as exc:
        logger.info("%s: no calibration of its uncertainty (%s)", model_cls.name, exc)
        return 1.0
    ratios = sorted(error / std for error, std in errors if std > 0)
    if len(ratios) < 4:
        return 1.0
    position = ONE_SIGMA * (len(ratios) - 1)
    low = int(position)
    high = min(low + 1, len(ratios) - 1)
    return max(1e-3, ratios[low] + (ratios[high] - ratios[low]) * (position - low))
