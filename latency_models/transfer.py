"""Few-shot transfer: a latency model for a new device from a stored one of another device, plus at most
20 end-to-end measurements on the new device (HELP's setting, in its simplest form).

The source predictor ranks the archs of the space; a new device mostly changes the scale and, less, how
latency grows with size. So `transfer` fits `log(ms here) = a + b log(source's prediction)` by least
squares on the new device's samples (3 to 20), keeping `b = 1` (a pure rescale) unless the free slope
predicts left-out samples better. A rescale keeps the source's ranking, so it cannot follow a device that
changes the relative cost of attention, dense and mixture-of-experts blocks (ONNX Runtime against torch,
one thread against two). Where the source splits an arch's time by block kind (a lookup table:
`LatencyModel.kind_features`), a third form reweights each kind: `ms here = sum_k w_k source_k + c`, fitted
by non-negative least squares on relative errors. Where the space groups blocks more finely than by kind
(`SearchSpace.block_family`: the sparse space's MoE blocks by expert count, whose dispatch ONNX Runtime runs
as a subgraph per expert and torch as one grouped matmul), a fourth form weights each family the same way.
Of these, the one with the smallest leave-one-out error on the samples is kept, and a relative spread is
stated from its residuals (calibrated like any kind's, `latency_models.calibration`). It keeps the source
predictor inside its payload, so it is stored, loaded, reported and chosen like any other kind. `hwnas
profile --device NEW --transfer-from OLD` builds one; the profile's held-out archs (measured twice) give its
report and noise floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

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

MAX_TRANSFER_SAMPLES = 20  # the few-shot budget: more than this is a profile, not a transfer
MIN_TRANSFER_SAMPLES = 3  # a scale and a slope, and one sample to judge them
MIN_RELATIVE_STD = 0.02
MIN_SLOPE, MAX_SLOPE = 0.25, 4.0  # how differently latency may grow with size on two devices
MIN_SAMPLES_PER_KIND_FIT = 3  # beyond one per weight: the kind-wise form is tried from (kinds + 1 + 3) samples


@register_latency_model("transfer")
class TransferLatencyModel(LatencyModel):
    needs_source: ClassVar[bool] = True

    @classmethod
    def from_profile(cls, *, space: SearchSpace, device: DeviceProfile, data: ProfileData) -> ProfileFit:
        if data.source is None:
            raise LatencyError("a transfer latency model needs a source predictor of another device; profile with "
                               "--transfer-from DEVICE")
        model = cls(space=space, device=device, source=data.source)
        model.fit(list(data.samples))
        return ProfileFit(model, len(data.samples), ("overhead_samples", "more_samples"))

    def __init__(self, *, space: SearchSpace, device: DeviceProfile, source: LatencyModel | None = None) -> None:
        super().__init__(space=space, device=device)
        self.source = source
        self.coef = (0.0, 1.0)  # a, b of log(ms) = a + b log(source ms)
        # or "line", or "kinds": ms = sum_k kind_weights[k] * source's ms of kind k + c, or "families": the same
        # by the space's block families
        self.mode = "rescale"
        self.kind_weights: dict[str, float] = {}
        self.relative_std = MIN_RELATIVE_STD

    def _source_log_ms(self, arch: Arch) -> float:
        if self.source is None:
            raise LatencyError("transfer latency model has no source predictor; load it from its payload")
        return math.log(self.source.predict(arch).mean_ms)

    def fit(self, samples: Sequence[FitSample]) -> None:
        self.check_samples(samples, minimum=MIN_TRANSFER_SAMPLES)
        xs = [self._source_log_ms(s.arch) for s in samples]
        ys = [math.log(s.latency_ms) for s in samples]
        # Each form only where it predicts left-out samples better than the simpler ones: with a few noisy
        # samples a free slope, or a weight per block kind, can extrapolate wildly.
        errors = {"rescale": _loo_error(xs, ys, free_slope=False), "line": _loo_error(xs, ys, free_slope=True)}
        rows_by_form = {"kinds": self._kind_rows(samples, families=False)}
        if rows_by_form["kinds"] is not None:
            errors["kinds"] = _loo_kinds_error(rows_by_form["kinds"][1], rows_by_form["kinds"][2])
            families = self._kind_rows(samples, families=True)
            if families is not None and len(families[0]) > len(rows_by_form["kinds"][0]):  # finer than kinds
                rows_by_form["families"] = families
                errors["families"] = _loo_kinds_error(families[1], families[2])
        self.mode = min(errors, key=lambda name: (errors[name], list(errors).index(name)))
        self.coef = _fit(xs, ys, free_slope=self.mode == "line")
        if self.mode in rows_by_form:
            kinds = rows_by_form[self.mode]
            assert kinds is not None
            names, rows, targets = kinds
            weights = _fit_kinds(rows, targets)
            self.kind_weights = dict(zip([*names, "constant"], weights))
            residuals = [math.log(max(_dot(weights, row), 1e-9) / y) for row, y in zip(rows, targets)]
            dof = max(1, len(rows) - len(weights))
        else:
            self.kind_weights = {}
            a, b = self.coef
            residuals = [y - (a + b * x) for x, y in zip(xs, ys)]
            dof = max(1, len(xs) - (2 if self.mode == "line" else 1))
        self.relative_std = max(MIN_RELATIVE_STD, math.sqrt(sum(r * r for r in residuals) / dof))
        self.fitted = True

    def _kind_rows(self, samples: Sequence[FitSample], *,
                   families: bool) -> tuple[list[str], list[list[float]], list[float]] | None:
        """Each sample's source time by block kind (or family) and a constant, with its measured ms; None when
        the source does not split archs so, or the samples are too few for a weight per kind."""
        assert self.source is not None
        features = [self.source.kind_features(s.arch, families=families) for s in samples]
        if any(f is None for f in features):
            return None
        names = sorted({name for f in features for name in f})  # type: ignore[union-attr]
        if len(samples) < len(names) + 1 + MIN_SAMPLES_PER_KIND_FIT:
            return None
        rows = [[f.get(name, 0.0) for name in names] + [1.0] for f in features]  # type: ignore[union-attr]
        return names, rows, [s.latency_ms for s in samples]

    def predict_raw(self, arch: Arch) -> LatencyPrediction:
        self.check_arch(arch)
        if self.mode in ("kinds", "families"):
            assert self.source is not None
            features = self.source.kind_features(arch, families=self.mode == "families")
            # a kind none of the samples had has no weight: the rescale answers for such an arch
            if features is not None and all(name in self.kind_weights for name, ms in features.items() if ms):
                mean = self.kind_weights.get("constant", 0.0) + sum(
                    weight * features.get(name, 0.0) for name, weight in self.kind_weights.items()
                    if name != "constant")
                if mean > 0:
                    return LatencyPrediction(mean_ms=mean, std_ms=self.relative_std * mean)
        a, b = self.coef
        mean = math.exp(a + b * self._source_log_ms(arch))
        return LatencyPrediction(mean_ms=mean, std_ms=self.relative_std * mean)

    def state(self) -> dict[str, Any]:
        assert self.source is not None
        return {"source_payload": self.source.save(), "source_device": self.source.device.model_dump(),
                "coef": list(self.coef), "relative_std": self.relative_std, "mode": self.mode,
                "kind_weights": dict(self.kind_weights)}

    def load_state(self, state: dict[str, Any]) -> None:
        source_device = DeviceProfile.model_validate(state["source_device"])
        self.source = LatencyModel.load(state["source_payload"], space=self.space, device=source_device)
        self.coef = (float(state["coef"][0]), float(state["coef"][1]))
        self.relative_std = float(state["relative_std"])
        # stored before the kind-wise form: a rescale, or a line where the slope is not 1
        self.mode = state.get("mode", "rescale" if self.coef[1] == 1.0 else "line")
        self.kind_weights = {str(k): float(v) for k, v in (state.get("kind_weights") or {}).items()}


def _fit(xs: Sequence[float], ys: Sequence[float], *, free_slope: bool) -> tuple[float, float]:
    """(a, b) of y = a + b x by least squares; b = 1 unless `free_slope` (and the xs spread), b within
    [MIN_SLOPE, MAX_SLOPE]."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = 1.0
    if free_slope and spread > 1e-9:
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread
        slope = min(MAX_SLOPE, max(MIN_SLOPE, slope))
    return mean_y - slope * mean_x, slope


def _loo_error(xs: Sequence[float], ys: Sequence[float], *, free_slope: bool) -> float:
    """Mean squared leave-one-out error of `_fit`."""
    total = 0.0
    for i in range(len(xs)):
        a, b = _fit([x for j, x in enumerate(xs) if j != i], [y for j, y in enumerate(ys) if j != i],
                    free_slope=free_slope)
        total += (ys[i] - (a + b * xs[i])) ** 2
    return total / len(xs)


def _dot(weights: Sequence[float], row: Sequence[float]) -> float:
    return sum(w * x for w, x in zip(weights, row))


def _fit_kinds(rows: Sequence[Sequence[float]], targets: Sequence[float]) -> list[float]:
    """Non-negative weights (a constant last) minimising the relative squared error of `rows @ w` on `targets`."""
    import numpy as np
    from scipy.optimize import nnls

    design = np.array(rows, dtype=float) / np.array(targets, dtype=float)[:, None]
    weights, _ = nnls(design, np.ones(len(targets)))
    return [float(w) for w in weights]


def _loo_kinds_error(rows: Sequence[Sequence[float]], targets: Sequence[float]) -> float:
    """Mean squared leave-one-out error of the kind-wise fit, in log ms (comparable with `_loo_error`)."""
    total = 0.0
    for i in range(len(rows)):
        weights = _fit_kinds([r for j, r in enumerate(rows) if j != i], [t for j, t in enumerate(targets) if j != i])
        total += math.log(max(_dot(weights, rows[i]), 1e-9) / targets[i]) ** 2
    return total / len(rows)
