"""Accuracy reports: a predictor's error on held-out archs, read against the measurement noise floor.

All shares and the MAPE are percentages; Kendall tau is in [-1, 1]. The noise floor applies the same
figures to two independent measurements of the same archs: no predictor can be judged more
accurate than the meter that judges it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from search_spaces.errors import LatencyError


class ErrorFigures(BaseModel):
    """How far `predicted` lies from `reference` (both in ms, same archs, same order)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int
    mape: float
    within_5pct: float
    within_10pct: float
    kendall_tau: float
    rmse_ms: float
    max_error_pct: float


class HoldoutPoint(BaseModel):
    """One held-out arch: what the predictor said and what the meter measured (the report's plot)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    predicted_ms: float
    predicted_std_ms: float
    measured_ms: float


class AccuracyReport(BaseModel):
    """What `hwnas profile --json` prints per predictor, and what is stored with it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    device: str
    space: str
    space_version: int
    n_train: int
    n_holdout: int
    mape: float
    within_5pct: float
    within_10pct: float
    kendall_tau: float
    rmse_ms: float
    max_error_pct: float
    within_1std: float
    noise_floor: ErrorFigures
    within_2std: float = 0.0  # reports stored before calibration have none
    std_scale: float = 1.0  # the calibration applied to the predictor's stds (`latency_models.calibration`)
    profiling_s: float
    evaluation_s: float
    predict_ms: float
    holdout: list[HoldoutPoint] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _check(predicted: Sequence[float], reference: Sequence[float]) -> None:
    if len(predicted) != len(reference):
        raise LatencyError(f"accuracy report: {len(predicted)} predictions for {len(reference)} measurements; "
                           "give one prediction per measured arch")
    if len(reference) < 2:
        raise LatencyError(f"accuracy report: needs at least 2 held-out archs, got {len(reference)}; "
                           "raise the held-out count")
    if any(not math.isfinite(r) or r <= 0 for r in reference):
        raise LatencyError("accuracy report: measured latencies must be positive and finite")


def error_figures(predicted: Sequence[float], reference: Sequence[float]) -> ErrorFigures:
    """MAPE, shares within 5% and 10%, Kendall tau (tau-b, ties handled), RMSE and worst error."""
    from scipy.stats import kendalltau

    _check(predicted, reference)
    relative = [abs(p - r) / r for p, r in zip(predicted, reference)]
    n = len(reference)
    tau = float(kendalltau(predicted, reference).statistic)
    return ErrorFigures(
        n=n,
        mape=100.0 * sum(relative) / n,
        within_5pct=100.0 * sum(e <= 0.05 for e in relative) / n,
        within_10pct=100.0 * sum(e <= 0.10 for e in relative) / n,
        kendall_tau=tau if math.isfinite(tau) else 0.0,
        rmse_ms=math.sqrt(sum((p - r) ** 2 for p, r in zip(predicted, reference)) / n),
        max_error_pct=100.0 * max(relative),
    )


def accuracy_report(*, kind: str, device: str, space: str, space_version: int, n_train: int,
                    predicted_ms: Sequence[float], predicted_std_ms: Sequence[float], measured_ms: Sequence[float],
                    remeasured_ms: Sequence[float], profiling_s: float, evaluation_s: float,
                    predict_ms: float, std_scale: float = 1.0) -> AccuracyReport:
    """The report of one predictor on held-out archs measured twice (`measured_ms`, `remeasured_ms`)."""
    figures = error_figures(predicted_ms, measured_ms)
    noise = error_figures(remeasured_ms, measured_ms)
    if len(predicted_std_ms) != len(measured_ms):
        raise LatencyError("accuracy report: give one uncertainty per prediction")
    covered = sum(abs(p - m) <= s for p, s, m in zip(predicted_ms, predicted_std_ms, measured_ms))
    covered_twice = sum(abs(p - m) <= 2 * s for p, s, m in zip(predicted_ms, predicted_std_ms, measured_ms))
    return AccuracyReport(
        kind=kind, device=device, space=space, space_version=space_version, n_train=n_train,
        n_holdout=figures.n, mape=figures.mape, within_5pct=figures.within_5pct, within_10pct=figures.within_10pct,
        kendall_tau=figures.kendall_tau, rmse_ms=figures.rmse_ms, max_error_pct=figures.max_error_pct,
        within_1std=100.0 * covered / figures.n, within_2std=100.0 * covered_twice / figures.n, std_scale=std_scale,
        noise_floor=noise, profiling_s=profiling_s,
        evaluation_s=evaluation_s, predict_ms=predict_ms,
        holdout=[HoldoutPoint(predicted_ms=p, predicted_std_ms=s, measured_ms=m)
                 for p, s, m in zip(predicted_ms, predicted_std_ms, measured_ms)],
    )
