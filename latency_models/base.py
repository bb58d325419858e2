"""The latency-model contract: predict an arch's latency on one device, for one space version.

A model is fitted per (device profile, space name, space version, latency signature of the space's
options). `save` gives bytes that the database stores; `load` refuses bytes fitted for another
space, version, signature or device. Payloads are pickles of our own fitted state (scikit-learn's
models have no other stable format); load only payloads this service wrote into its own database.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from latency_models.device import DeviceProfile
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace
from search_spaces.errors import LatencyError
from search_spaces.registry import Registry

PAYLOAD_FORMAT = 1


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted latency with its uncertainty (one standard deviation, or a robust stand-in)."""

    mean_ms: float
    std_ms: float


@dataclass(frozen=True)
class FitSample:
    """One end-to-end training example for `fit`: an arch and its measured median latency."""

    arch: Arch
    latency_ms: float


@dataclass(frozen=True)
class ProfileData:
    """What a profiling run measured, for fitting each kind: end-to-end samples (the first `overhead_count`
    measured first, as a small set), and each block's isolated latency when some kind asked for them."""

    samples: Sequence[FitSample]
    overhead_count: int
    block_ms: Mapping[str, float] | None = None
    source: LatencyModel | None = None  # another device's predictor, for kinds that transfer from one


@dataclass(frozen=True)
class ProfileFit:
    """A kind fitted from a profiling run: the model, how many end-to-end samples it used, and which of the
    profiler's timed stages it needed (its profiling cost)."""

    model: LatencyModel
    n_train: int
    stages: tuple[str, ...]


class LatencyModel(ABC):
    """Predicts latency for the archs of one space (name, version, latency signature) on one device.

    It refuses archs of another space or version: a model fitted on one space says nothing of another.
    `needs_block_latencies` is a capability: the profiler times every block of the space alone only when
    some kind asked for it declares it; `from_profile` fits a kind from what the profiler measured.
    """

    name: ClassVar[str]
    needs_block_latencies: ClassVar[bool] = False
    needs_source: ClassVar[bool] = False  # fitted from another device's predictor (`transfer`): never a default kind

    @classmethod
    def from_profile(cls, *, space: SearchSpace, device: DeviceProfile, data: ProfileData) -> ProfileFit:
        """Fit this kind on every end-to-end sample of a profiling run."""
        model = cls(space=space, device=device)
        model.fit(list(data.samples))
        return ProfileFit(model, len(data.samples), ("overhead_samples", "more_samples", "corners_again"))

    def __init__(self, *, space: SearchSpace, device: DeviceProfile) -> None:
        self.space = space
        self.device = device
        self.fitted = False
        self.std_scale = 1.0  # calibration: predicted stds times this cover 68% of cross-fitted errors
        self.reference: dict[str, Any] | None = None  # {"arch", "ms"}: the drift reference timed at profiling
        self.drift_factor = 1.0  # re-anchoring: the reference's time now over its time at profiling

    def check_arch(self, arch: Arch) -> None:
        if arch.space != self.space.name or arch.version != self.space.version:
            raise LatencyError(
                f"latency model {self.name!r} for {self.space.name} v{self.space.version} on {self.device.name!r} "
                f"cannot predict an arch of {arch.space} v{arch.version}; fit one for that space"
            )
        if not self.fitted:
            raise LatencyError(f"latency model {self.name!r} is not fitted; fit it (or load a fitted one) first")

    @abstractmethod
    def fit(self, samples: Sequence[FitSample]) -> None:
        """Fit to end-to-end measured samples (archs of this space)."""

    def check_samples(self, samples: Sequence[FitSample], *, minimum: int) -> None:
        """Refuse too few samples, or samples of another space or version."""
        if len(samples) < minimum:
            raise LatencyError(f"{self.name} latency model needs at least {minimum} end-to-end samples, "
                               f"got {len(samples)}; raise --samples")
        for s in samples:
            if s.arch.space != self.space.name or s.arch.version != self.space.version:
                raise LatencyError(f"fit sample of {s.arch.space} v{s.arch.version} does not belong to "
                                   f"{self.space.name} v{self.space.version}")

    @abstractmethod
    def predict_raw(self, arch: Arch) -> LatencyPrediction:
        """The prediction as fitted, before calibration (`std_scale`) and re-anchoring (`drift_factor`)."""

    def predict_raw_many(self, archs: Sequence[Arch]) -> list[LatencyPrediction]:
        return [self.predict_raw(arch) for arch in archs]

    def kind_features(self, arch: Arch, *, families: bool = False) -> dict[str, float] | None:
        """The arch's predicted time split by block kind (ms per kind, as this model sees the device), or with
        `families` by the space's finer `block_family`, for a transfer to reweight; None where the model does
        not decompose an arch (the default)."""
        return None

    def predict(self, arch: Arch) -> LatencyPrediction:
        """The latency on the device now: the fitted prediction re-anchored to the device's current speed,
        with its standard deviation calibrated on cross-fitted errors."""
        return self._adjusted(self.predict_raw(arch))

    def predict_many(self, archs: Sequence[Arch]) -> list[LatencyPrediction]:
        return [self._adjusted(p) for p in self.predict_raw_many(archs)]

    def _adjusted(self, raw: LatencyPrediction) -> LatencyPrediction:
        if self.std_scale == 1.0 and self.drift_factor == 1.0:
            return raw
        return LatencyPrediction(mean_ms=raw.mean_ms * self.drift_factor,
                                 std_ms=raw.std_ms * self.std_scale * self.drift_factor)

    # ---- persistence ---------------------------------------------------------------------------
    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The fitted state, as plain values (and scikit-learn estimators)."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None: ...

    def header(self) -> dict[str, Any]:
        return {"format": PAYLOAD_FORMAT, "kind": self.name, "space": self.space.name,
                "space_version": self.space.version, "space_key": self.space.latency_key(),
                "device": self.device.model_dump(exclude={"builtin"})}

    def save(self) -> bytes:
        if not self.fitted:
            raise LatencyError(f"latency model {self.name!r} is not fitted; nothing to save")
        calibration = {"std_scale": self.std_scale, "reference": self.reference}
        return pickle.dumps({"header": self.header(), "state": self.state(), "calibration": calibration},
                            protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, payload: bytes, *, space: SearchSpace, device: DeviceProfile) -> LatencyModel:
        """Rebuild a saved model for `space` on `device`; refuse one fitted for anything else."""
        try:
            data = pickle.loads(payload)  # noqa: S301  (our own payloads, from our own database)
            header = data["header"]
        except Exception as exc:  # a corrupt payload, whatever the unpickler raised
            raise LatencyError(f"stored latency model cannot be read ({type(exc).__name__}); profile again") from None
        kind = header.get("kind")
        model_cls = cls if cls is not LatencyModel else get_latency_model_class(str(kind))
        model = model_cls(space=space, device=device)
        expected = model.header()
        for key, what in (("format", "payload format"), ("kind", "kind"), ("space", "space"),
                          ("space_version", "space version"), ("space_key", "space options (latency signature)"),
                          ("device", "device profile")):
            if header.get(key) != expected[key]:
                raise LatencyError(
                    f"stored latency model was fitted for {what} {header.get(key)!r}, not {expected[key]!r}; "
                    f"run `hwnas profile --device {device.name} --space {space.name}` to fit one for this one"
                )
        model.load_state(data["state"])
        calibration = data.get("calibration") or {}  # payloads saved before calibration: none
        model.std_scale = float(calibration.get("std_scale", 1.0))
        model.reference = calibration.get("reference")
        model.fitted = True
        return model


LATENCY_MODELS: Registry[LatencyModel] = Registry("latency model", LatencyModel)


def register_latency_model(name: str):  # type: ignore[no-untyped-def]
    return LATENCY_MODELS.register(name)


def get_latency_model_class(name: str) -> type[LatencyModel]:
    _builtin_models()
    return LATENCY_MODELS.get(name)


def latency_model_names(*, with_source: bool = False) -> tuple[str, ...]:
    """Every registered latency model kind (the built-in ones and any plug-in imported before): those fitted
    on block latencies first, as the profiler measures the blocks first; then by name. Kinds that need
    another device's predictor (`transfer`) only `with_source`."""
    _builtin_models()
    names = [n for n in LATENCY_MODELS.names() if with_source or not LATENCY_MODELS.get(n).needs_source]
    return tuple(sorted(names, key=lambda name: (not LATENCY_MODELS.get(name).needs_block_latencies, name)))


def _builtin_models() -> None:
    import latency_models.learned  # noqa: F401  (registers the built-in models)
    import latency_models.lookup_table  # noqa: F401
    import latency_models.transfer  # noqa: F401

