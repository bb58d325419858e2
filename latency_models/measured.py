"""`MeasuredLatencyModel`: "predicts" by building the arch and measuring it on this machine.

The first implementation behind the latency-model interface: exact for the local CPU, slow (it
times every candidate), and only valid when the profile describes this machine.
"""

from __future__ import annotations

from collections.abc import Sequence

from latency_models.base import LatencyModel, LatencyPrediction, register_latency_model
from latency_models.device import DeviceProfile
from latency_models.meter import LatencyMeter, LatencySample, MeterSettings
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace
from search_spaces.errors import LatencyError


@register_latency_model("measured")
class MeasuredLatencyModel(LatencyModel):
    def __init__(self, *, space: SearchSpace, device: DeviceProfile, meter: MeterSettings | None = None) -> None:
        super().__init__(space=space, device=device)
        if not device.describes_this_machine():
            raise LatencyError(
                f"device {device.name!r} ({device.backend}, {device.threads} threads) is not this machine; "
                "measure on a node that has it, or pick a local profile such as cpu-1t"
            )
        self.meter = LatencyMeter(device, meter)
        self.last_samples: dict[str, LatencySample] = {}

    def measure(self, archs: Sequence[Arch]) -> list[LatencySample]:
        """Measure archs interleaved (weights random: latency does not depend on their values)."""
        models = []
        for arch in archs:
            self.check_arch(arch)
            model = self.space.build(arch, seed=0)
            inputs = self.space.example_inputs(arch, batch_size=self.device.batch_size, seq_len=self.device.seq_len)
            models.append((model, inputs))
        samples = self.meter.measure_many(models)
        for arch, sample in zip(archs, samples):
            self.last_samples[arch.hash] = sample
        return samples

    def predict(self, arch: Arch) -> LatencyPrediction:
        sample = self.measure([arch])[0]
        return LatencyPrediction(mean_ms=sample.median_ms, std_ms=sample.spread_ms, measured=True)
