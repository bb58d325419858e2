from __future__ import annotations

import pytest

from latency_models.report import accuracy_report, error_figures
from search_spaces.errors import LatencyError


def test_error_figures_on_hand_computed_data() -> None:
    measured = [10.0, 20.0, 40.0, 80.0]
    predicted = [10.4, 21.6, 36.0, 80.0]  # errors 4%, 8%, 10%, 0%
    f = error_figures(predicted, measured)
    assert f.n == 4
    assert f.mape == pytest.approx(100 * (0.04 + 0.08 + 0.10 + 0.0) / 4)
    assert f.within_5pct == pytest.approx(50.0)  # 4% and 0%
    assert f.within_10pct == pytest.approx(100.0)
    assert f.kendall_tau == pytest.approx(1.0)  # same order
    assert f.max_error_pct == pytest.approx(10.0)
    assert f.rmse_ms == pytest.approx(((0.4 ** 2 + 1.6 ** 2 + 4.0 ** 2) / 4) ** 0.5)


def test_kendall_tau_counts_swapped_pairs() -> None:
    # One discordant pair out of six: tau = (5 - 1) / 6.
    f = error_figures([1.0, 3.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert f.kendall_tau == pytest.approx(4 / 6)
    assert error_figures([4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]).kendall_tau == pytest.approx(-1.0)


def test_report_sets_the_noise_floor_beside_the_error() -> None:
    measured = [10.0, 20.0, 30.0]
    report = accuracy_report(kind="lookup-table", device="d", space="s", space_version=1, n_train=5,
                             predicted_ms=[11.0, 20.0, 30.0], predicted_std_ms=[0.5, 1.0, 1.0],
                             measured_ms=measured, remeasured_ms=[10.0, 22.0, 30.0], profiling_s=1.5,
                             evaluation_s=2.0, predict_ms=0.01)
    assert report.mape == pytest.approx(100 * 0.1 / 3)
    assert report.noise_floor.mape == pytest.approx(100 * 0.1 / 3)
    assert report.within_1std == pytest.approx(100 * 2 / 3)  # the first misses by 1.0 > 0.5
    summary = report.summary()
    for key in ("kind", "mape", "within_5pct", "within_10pct", "kendall_tau", "noise_floor", "profiling_s"):
        assert key in summary


def test_mismatched_or_empty_inputs_are_refused() -> None:
    with pytest.raises(LatencyError, match="one prediction per"):
        error_figures([1.0], [1.0, 2.0])
    with pytest.raises(LatencyError, match="at least 2"):
        error_figures([1.0], [1.0])
    with pytest.raises(LatencyError, match="positive"):
        error_figures([1.0, 2.0], [0.0, 2.0])
