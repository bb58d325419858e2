"""The lookup-table predictor (HAT, PLANER): blocks timed in isolation, summed, plus a fitted overhead.

Every distinct block of the space (`SearchSpace.blocks`) is timed alone on the device; an arch's
latency is `scale * sum(block ms) + per_block_ms * blocks + constant_ms`, the three coefficients fitted
by non-negative least squares on a few end-to-end samples. The overhead terms absorb what isolated
timing cannot see (the Python call chain between blocks, caches warmed by the previous block). The
uncertainty is the relative residual spread on those samples, scaled to the prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from latency_models.base import (
    FitSample,
    LatencyModel,
    LatencyPrediction,
    ProfileData,
    ProfileFit,
    register_latency_model,
)
from latency_models.device import DeviceProfile
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace
from search_spaces.errors import LatencyError

MIN_FIT_SAMPLES = 3
MIN_RELATIVE_STD = 0.02  # below this, the meter's own noise dominates (see the noise floor of the reports)


@register_latency_model("lookup-table")
class LookupTableLatencyModel(LatencyModel):
    needs_block_latencies = True

    @classmethod
    def from_profile(cls, *, space: SearchSpace, device: DeviceProfile, data: ProfileData) -> ProfileFit:
        """The blocks' isolated times, and the overhead fitted on the first (small) set of samples."""
        if data.block_ms is None:
            raise LatencyError("the lookup-table latency model needs the blocks timed alone; profile with it "
                               "among the kinds")
        model = cls(space=space, device=device, block_ms=data.block_ms)
        model.fit(list(data.samples[:data.overhead_count]))
        return ProfileFit(model, data.overhead_count, ("blocks", "overhead_samples", "corners_again"))

    def __init__(self, *, space: SearchSpace, device: DeviceProfile,
                 block_ms: Mapping[str, float] | None = None) -> None:
        super().__init__(space=space, device=device)
        self.block_ms: dict[str, float] = dict(block_ms or {})
        self.coef = (1.0, 0.0, 0.0)
        self.relative_std = MIN_RELATIVE_STD

    def block_features(self, arch: Arch) -> tuple[float, float]:
        """(sum of the arch's blocks' isolated times in ms, number of blocks)."""
        total = 0.0
        blocks = self.space.blocks(arch)
        for block in blocks:
            ms = self.block_ms.get(block.key)
            if ms is None:
                raise LatencyError(f"lookup table for {self.space.name} on {self.device.name!r} has no entry for "
                                   f"block {block.key}; profile the space again with these space options")
            total += ms
        return total, float(len(blocks))

    def kind_features(self, arch: Arch, *, families: bool = False) -> dict[str, float] | None:
        """The blocks' isolated times summed by kind (attention, ffn, moe, embedding, ...; with `families`, by
        the space's `block_family`), scaled as the fitted overhead scales them, plus `blocks`: the per-block
        overhead times the block count."""
        scale, per_block, _ = self.coef
        sums: dict[str, float] = {}
        blocks = self.space.blocks(arch)
        for block in blocks:
            ms = self.block_ms.get(block.key)
            if ms is None:
                return None
            name = self.space.block_family(block) if families else block.kind
            sums[name] = sums.get(name, 0.0) + scale * ms
        sums["blocks"] = per_block * len(blocks)
        return sums

    def fit(self, samples: Sequence[FitSample]) -> None:
        import numpy as np
        from scipy.optimize import nnls

        if not self.block_ms:
            raise LatencyError("lookup table is empty: time the space's blocks before fitting the overhead")
        self.check_samples(samples, minimum=MIN_FIT_SAMPLES)
        rows = [(*self.block_features(s.arch), 1.0) for s in samples]
        target = np.array([s.latency_ms for s in samples])
        # Weight rows by 1/latency so the fit minimises relative, not absolute, error.
        design = np.array(rows) / target[:, None]
        coef, _ = nnls(design, np.ones_like(target))
        self.coef = (float(coef[0]), float(coef[1]), float(coef[2]))
        predicted = np.array(rows) @ coef
        relative = (predicted - target) / target
        dof = max(1, len(samples) - len(coef))  # in-sample residuals understate held-out error
        self.relative_std = max(MIN_RELATIVE_STD, float(math.sqrt(float(np.sum(relative ** 2)) / dof)))
        self.fitted = True

    def predict_raw(self, arch: Arch) -> LatencyPrediction:
        self.check_arch(arch)
        total, count = self.block_features(arch)
        scale, per_block, constant = self.coef
        mean = scale * total + per_block * count + constant
        return LatencyPrediction(mean_ms=mean, std_ms=self.relative_std * mean)

    def state(self) -> dict[str, Any]:
        return {"block_ms": self.block_ms, "coef": list(self.coef), "relative_std": self.relative_std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.block_ms = dict(state["block_ms"])
        self.coef = tuple(float(c) for c in state["coef"])  # type: ignore[assignment]
        self.relative_std = float(state["relative_std"])
