from __future__ import annotations

import pytest

from latency_models.base import FitSample
from latency_models.device import DeviceProfile
from latency_models.learned import NOMINAL_RELATIVE_STD, LearnedLatencyModel
from latency_models.lookup_table import LookupTableLatencyModel
from search_spaces.base import SearchSpace
from search_spaces.errors import LatencyError
from latency_models.testing import DEVICE, LatencyModelContract, synthetic_latency_ms


def block_table(space: SearchSpace) -> dict[str, float]:
    """Block times consistent with `synthetic_latency_ms` (what isolated timing would find)."""
    return {b.key: 0.01 * sum(v for _, v in b.params) / 16 for b in space.block_catalogue()}


class TestLookupTable(LatencyModelContract):
    def make_model(self, space: SearchSpace, device: DeviceProfile) -> LookupTableLatencyModel:
        return LookupTableLatencyModel(space=space, device=device, block_ms=block_table(space))

    def test_recovers_the_overhead_exactly(self, space: SearchSpace, fitted: LookupTableLatencyModel) -> None:
        scale, per_block, constant = fitted.coef
        assert abs(scale - 1.0) < 1e-6 and abs(per_block - 0.03) < 1e-6 and abs(constant - 0.2) < 1e-6

    def test_a_block_missing_from_the_table_is_named(self, space: SearchSpace) -> None:

        from search_spaces.base import random_archs

        table = block_table(space)
        arch = random_archs(space, count=1, seed=0)[0]
        missing = space.blocks(arch)[0].key
        del table[missing]
        model = LookupTableLatencyModel(space=space, device=DEVICE, block_ms=table)
        with pytest.raises(LatencyError, match="no entry for block"):
            model.fit([FitSample(a, synthetic_latency_ms(space, a)) for a in [arch] * 3])


class TestLearned(LatencyModelContract):
    def make_model(self, space: SearchSpace, device: DeviceProfile) -> LearnedLatencyModel:
        return LearnedLatencyModel(space=space, device=device)

    def test_uncertainty_is_one_share_of_the_predicted_latency(self, space: SearchSpace,
                                                                fitted: LearnedLatencyModel) -> None:
        """The learned model errs in proportion to the latency, not where quantile models disagree: its std
        is one share of each prediction (nominal until the profiler calibrates it)."""
        from search_spaces.base import random_archs

        predictions = [fitted.predict(a) for a in random_archs(space, count=10, seed=9)]
        assert len({round(p.mean_ms, 9) for p in predictions}) > 1
        shares = {round(p.std_ms / p.mean_ms, 12) for p in predictions}
        assert shares == {round(NOMINAL_RELATIVE_STD * fitted.std_scale, 12)}

    def test_a_model_stored_before_relative_uncertainty_keeps_its_per_arch_spread(
            self, space: SearchSpace, fitted: LearnedLatencyModel) -> None:
        import math

        import numpy as np
        from sklearn.ensemble import GradientBoostingRegressor

        from search_spaces.base import random_archs

        archs = random_archs(space, count=60, seed=0)
        features = np.array([space.encode(a) for a in archs])
        target = np.log([synthetic_latency_ms(space, a) for a in archs])
        quantiles = {f"q{int(100 * q)}": GradientBoostingRegressor(loss="quantile", alpha=q).fit(features, target)
                     for q in (0.1, 0.9)}  # what such a model held beside the mean; and no relative_std
        state = {k: v for k, v in fitted.state().items() if k != "relative_std"} | {
            "models": {**fitted.models, **quantiles}}
        old = LearnedLatencyModel(space=space, device=DEVICE)
        old.load_state(state)
        old.fitted = True
        for arch in random_archs(space, count=5, seed=9):
            encoded = np.array([space.encode(arch)], dtype=np.float32)
            q10, q90 = old._predict("q10", encoded), old._predict("q90", encoded)
            spread = abs(math.exp(float(q90[0])) - math.exp(float(q10[0])))
            assert old.predict(arch).std_ms == pytest.approx(spread / 2.5631)
