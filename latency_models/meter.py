"""The latency meter: how to time a model under a device profile (separate from how to predict)."""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from latency_models.device import DeviceProfile
from search_spaces.errors import LatencyError
from search_spaces.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor, nn


class MeterSettings(BaseModel):
    """How many runs: `warmup` untimed runs, then rounds of `repeats` timed runs per model.

    When several models are measured together, every round visits them in a freshly shuffled order,
    so that slow drifts of the machine spread over all models instead of biasing one. After
    `min_rounds`, measuring stops as soon as one more round moved no model's median by more than
    `tolerance` (relative), or at `max_rounds` (the cap); the protocol records which.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup: int = Field(default=3, ge=0, le=1000)
    repeats: int = Field(default=5, ge=1, le=10000)
    min_rounds: int = Field(default=4, ge=1, le=1000)
    max_rounds: int = Field(default=10, ge=1, le=1000)
    tolerance: float = Field(default=0.01, ge=0.0, le=1.0, description="relative change of a median that counts as stable")
    seed: int = 0

    @model_validator(mode="after")
    def _rounds_ordered(self) -> MeterSettings:
        if self.min_rounds > self.max_rounds:
            raise ValueError(f"min_rounds ({self.min_rounds}) must not exceed max_rounds ({self.max_rounds}); "
                             "raise max_rounds")
        return self


@dataclass(frozen=True)
class LatencySample:
    """One measured latency with the full protocol it was measured under."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    protocol: dict[str, Any]

    @property
    def spread_ms(self) -> float:
        """Half the p10-p90 range: a robust stand-in for the standard deviation."""
        return (self.p90_ms - self.p10_ms) / 2.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run the block with torch limited to `threads` intra-op threads, then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    position = q * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


class LatencyMeter(ABC):
    """Times forward passes of models under a `DeviceProfile`; one meter per backend (`METERS`, by the
    profile's `backend`). The rounds, the interleaving and the stopping rule are shared; a backend says how
    a model is placed on its device (`place`) and how one run is timed (`time_once`)."""

    name: ClassVar[str]

    def __init__(self, device: DeviceProfile, settings: MeterSettings | None = None) -> None:
        self.device = device
        self.settings = settings or MeterSettings()

    def protocol(self, *, rounds_run: int, stable: bool) -> dict[str, Any]:
        return {
            "device": self.device.name,
            "backend": self.device.backend,
            "threads": self.device.threads,
            "batch_size": self.device.batch_size,
            "seq_len": self.device.seq_len,
            "dtype": self.device.dtype,
            "warmup": self.settings.warmup,
            "repeats": self.settings.repeats,
            "min_rounds": self.settings.min_rounds,
            "max_rounds": self.settings.max_rounds,
            "tolerance": self.settings.tolerance,
            "rounds": rounds_run,
            "stable": stable,
            "statistic": "median",
            "interleaved": True,
        }

    def measure(self, model: nn.Module, inputs: Mapping[str, Tensor]) -> LatencySample:
        return self.measure_many([(model, inputs)])[0]

    def measure_many(self, models: Sequence[tuple[nn.Module, Mapping[str, Tensor]]]) -> list[LatencySample]:
        """Measure several models interleaved: each round runs each model `repeats` times, order shuffled.

        Rounds continue until every model's median is stable (see `MeterSettings`) or the cap is hit.
        """
        import torch

        if not models:
            return []
        s = self.settings
        prepared = [self.place(model, inputs) for model, inputs in models]
        timings: list[list[float]] = [[] for _ in prepared]
        order = list(range(len(prepared)))
        rng = random.Random(s.seed)
        medians: list[float] | None = None
        stable = False
        rounds_run = 0
        with pinned_threads(self.device.threads), torch.inference_mode():
            for model, inputs in prepared:
                for _ in range(s.warmup):
                    model(**inputs)
            while rounds_run < s.max_rounds:
                rng.shuffle(order)
                for index in order:
                    model, inputs = prepared[index]
                    for _ in range(s.repeats):
                        timings[index].append(self.time_once(model, inputs))
                rounds_run += 1
                current = [statistics.median(values) for values in timings]
                if rounds_run >= s.min_rounds and medians is not None:
                    stable = all(abs(now - before) <= s.tolerance * before for now, before in zip(current, medians))
                    if stable:
                        break
                medians = current
        protocol = self.protocol(rounds_run=rounds_run, stable=stable)
        samples = []
        for values in timings:
            values.sort()
            samples.append(LatencySample(
                median_ms=statistics.median(values), p10_ms=_quantile(values, 0.1), p90_ms=_quantile(values, 0.9),
                runs=len(values), protocol=protocol,
            ))
        return samples

    @abstractmethod
    def place(self, model: nn.Module, inputs: Mapping[str, Tensor]) -> tuple[nn.Module, Mapping[str, Tensor]]:
        """The model (in eval mode) and its inputs on the device, in the profile's dtype."""

    def time_once(self, model: nn.Module, inputs: Mapping[str, Tensor]) -> float:
        """One timed forward pass, in milliseconds: wall-clock (`time.perf_counter`) around the call, right for a
        backend whose call returns when its work is done (torch on the CPU, ONNX Runtime); CUDA overrides it."""
        began = time.perf_counter()
        model(**inputs)
        return (time.perf_counter() - began) * 1000.0


METERS: Registry[LatencyMeter] = Registry("latency meter backend", LatencyMeter)
register_meter = METERS.register


def make_meter(device: DeviceProfile, settings: MeterSettings | None = None) -> LatencyMeter:
    """The meter for the device profile's backend."""
    if device.backend == "onnxruntime-cpu":
        import latency_models.onnx_runtime  # noqa: F401  (registers its meter; imports onnxruntime only when used)
    if device.backend not in METERS:
        raise LatencyError(f"device {device.name!r}: backend {device.backend!r} cannot be measured yet; use one "
                           f"of: {', '.join(METERS.names())}")
    return METERS.get(device.backend)(device, settings)


@register_meter("torch-cpu")
class TorchCpuMeter(LatencyMeter):
    """torch eager on the CPU, timed with `time.perf_counter`."""

    def place(self, model: nn.Module, inputs: Mapping[str, Tensor]) -> tuple[nn.Module, Mapping[str, Tensor]]:
        import torch

        dtype = getattr(torch, self.device.dtype)
        return model.eval().to(dtype=dtype if dtype != torch.float32 else None), dict(inputs)


@register_meter("cuda")
class CudaMeter(LatencyMeter):
    """torch eager on a CUDA device, timed with CUDA events (synchronised after each run)."""

    def place(self, model: nn.Module, inputs: Mapping[str, Tensor]) -> tuple[nn.Module, Mapping[str, Tensor]]:
        import torch

        dtype = getattr(torch, self.device.dtype)
        target = torch.device("cuda")
        model = model.eval().to(device=target, dtype=dtype if dtype != torch.float32 else None)
        return model, {k: v.to(target) for k, v in inputs.items()}

    def time_once(self, model: nn.Module, inputs: Mapping[str, Tensor]) -> float:
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        model(**inputs)
        end.record()
        torch.cuda.synchronize()
        return float(start.elapsed_time(end))
