"""The latency-model contract: predict an arch's latency on one device, for one space version."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from latency_models.device import DeviceProfile
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace
from search_spaces.errors import LatencyError
from search_spaces.registry import Registry


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted latency with its uncertainty (one standard deviation, or a robust stand-in)."""

    mean_ms: float
    std_ms: float
    measured: bool = False


@dataclass(frozen=True)
class FitSample:
    """One end-to-end training example for `fit`: an arch and its measured median latency."""

    arch: Arch
    latency_ms: float


class LatencyModel(ABC):
    """Predicts latency for the archs of one space (name and version) on one device profile.

    It refuses archs of another space or version: a model fitted on one space says nothing of
    another. `fit` is a no-op for models that need no training data.
    """

    name: ClassVar[str]

    def __init__(self, *, space: SearchSpace, device: DeviceProfile) -> None:
        self.space = space
        self.device = device

    def check_arch(self, arch: Arch) -> None:
        if arch.space != self.space.name or arch.version != self.space.version:
            raise LatencyError(
                f"latency model {self.name!r} for {self.space.name} v{self.space.version} on {self.device.name!r} "
                f"cannot predict an arch of {arch.space} v{arch.version}; fit one for that space"
            )

    def fit(self, samples: Sequence[FitSample]) -> None:  # noqa: B027  (optional for measuring models)
        """Fit to measured samples; models that measure directly ignore this."""

    @abstractmethod
    def predict(self, arch: Arch) -> LatencyPrediction: ...

    def predict_many(self, archs: Sequence[Arch]) -> list[LatencyPrediction]:
        return [self.predict(arch) for arch in archs]


LATENCY_MODELS: Registry[LatencyModel] = Registry("latency model", LatencyModel)


def register_latency_model(name: str):  # type: ignore[no-untyped-def]
    return LATENCY_MODELS.register(name)


def get_latency_model_class(name: str) -> type[LatencyModel]:
    import latency_models.measured  # noqa: F401  (registers the built-in models)

    return LATENCY_MODELS.get(name)
