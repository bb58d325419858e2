from __future__ import annotations

import pytest

from latency_models.base import FitSample
from latency_models.device import DeviceProfile
from latency_models.learned import LearnedLatencyModel
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

    def test_uncertainty_comes_from_the_quantile_spread(self, space: SearchSpace, fitted: LearnedLatencyModel) -> None:
        import math

        import numpy as np

        from search_spaces.base import random_archs

        for arch in random_archs(space, count=10, seed=9):
            _, q10, q90 = fitted._predict_log(np.array([space.encode(arch)], dtype=np.float32))
            spread = abs(math.exp(float(q90[0])) - math.exp(float(q10[0])))
            assert fitted.predict(arch).std_ms == pytest.approx(spread / 2.5631)
