"""Measuring archs and blocks of a space on this machine, in interleaved chunks, drift-corrected.

Models measured together are interleaved by the meter; chunks bound the memory held at once (a chunk
of full-size BERTs is a few hundred MB each). Weights are whatever `build_for_timing` gives: latency
depends on shapes, not values (MoE spaces keep seeded weights, since routing decides the work).

A shared machine drifts: the same model can run 5% slower for a minute, or 50% slower while another
process holds the core. With a `Reference` (one fixed model), every chunk also times the reference,
and the chunk's figures are scaled by `reference baseline / reference now`, so that samples taken at
different times are comparable. The protocol of each sample records the reference's figures and
the factor applied.

The baseline is first the reference's median in the first chunk, and one chunk's median of the reference
moves 15 to 30% between chunks on a quiet machine: a profile whose first chunk caught the reference slow
was scaled up as a whole (measured: every sample of a `pruned-bert` profile 17% above the reference's median
speed, 6.83 ms in the first chunk against a median of 5.83 over 23 more). `rebase` moves a finished
measurement to the median of the reference over all its chunks, the machine's typical speed.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from latency_models.device import DeviceProfile
from latency_models.meter import LatencyMeter, LatencySample
from search_spaces.arch import Arch
from search_spaces.base import Block, DecodeSpace, SearchSpace, random_archs
from search_spaces.errors import LatencyError

if TYPE_CHECKING:
    from torch import Tensor, nn

Progress = Callable[[int], None]
Builder = Callable[[int], "tuple[nn.Module, Mapping[str, Tensor]]"]
DEFAULT_CHUNK = 16


@dataclass
class Reference:
    """A fixed model timed in every chunk; `baseline_ms` is its first median (or given), per token on a decode
    device (`per_call_tokens` tokens a timed call); `observed_ms` holds its median in each chunk."""

    model: nn.Module
    inputs: Mapping[str, Tensor]
    baseline_ms: float | None = None
    per_call_tokens: int = 1
    observed_ms: list[float] = field(default_factory=list)

    @classmethod
    def for_arch(cls, space: SearchSpace, arch: Arch, meter: LatencyMeter) -> Reference:
        return cls(*_timing_pair(space, arch, meter), per_call_tokens=tokens_per_call(meter.device))


def drift_reference_arch(space: SearchSpace, *, seed: int) -> Arch:
    """The arch a measurement times in every chunk for drift correction: the median by parameters of five
    random archs (`seed`), neither the cheapest nor the costliest to time."""
    candidates = random_archs(space, count=5, seed=seed)
    sizes = [sum(p.numel() for p in space.build_for_timing(a).parameters()) for a in candidates]
    return sorted(zip(sizes, candidates), key=lambda x: x[0])[2][1]


def tokens_per_call(device: DeviceProfile) -> int:
    """How many latencies one timed call of an arch holds: the generated tokens on a decode device, else 1."""
    return device.decode_tokens if device.workload == "decode" else 1


def _timing_pair(space: SearchSpace, arch: Arch, meter: LatencyMeter) -> tuple[nn.Module, Mapping[str, Tensor]]:
    """The arch's network for timing, with inputs of the device's batch and length; on a decode device, the
    arch generating `decode_tokens` tokens after a prompt of `seq_len` with its cache."""
    device = meter.device
    space.validate(arch)
    if device.workload == "decode":
        return decode_space(space, device).build_decode_timer(
            arch, batch_size=device.batch_size, prompt_len=device.seq_len, new_tokens=device.decode_tokens)
    return (space.build_for_timing(arch),
            space.example_inputs(arch, batch_size=device.batch_size, seq_len=device.seq_len))


def decode_space(space: SearchSpace, device: DeviceProfile) -> DecodeSpace:
    if not isinstance(space, DecodeSpace):
        raise LatencyError(f"device profile {device.name!r} times token generation (workload: decode), and space "
                           f"{space.name!r} is not a causal language model; use a profile with workload: forward")
    return space


def _times(sample: LatencySample, factor: float, **protocol: float) -> LatencySample:
    """`sample` with its figures multiplied by `factor`, and `protocol` added to its protocol."""
    return LatencySample(median_ms=sample.median_ms * factor, p10_ms=sample.p10_ms * factor,
                         p90_ms=sample.p90_ms * factor, runs=sample.runs, protocol={**sample.protocol, **protocol})


def _per_token(sample: LatencySample, tokens: int) -> LatencySample:
    return sample if tokens == 1 else _times(sample, 1 / tokens, per_token_of=tokens)


def _scaled(sample: LatencySample, reference: LatencySample, baseline_ms: float) -> LatencySample:
    factor = baseline_ms / reference.median_ms
    return _times(sample, factor, reference_ms=reference.median_ms, reference_baseline_ms=baseline_ms,
                  drift_factor=factor)


def _measure(count: int, build: Builder, meter: LatencyMeter, *, chunk_size: int, reference: Reference | None,
             on_progress: Progress | None, tokens: int = 1) -> list[LatencySample]:
    samples: list[LatencySample] = []
    for start in range(0, count, chunk_size):
        chunk = range(start, min(start + chunk_size, count))
        models = [build(i) for i in chunk]
        if reference is not None:
            models.append((reference.model, reference.inputs))
        measured = meter.measure_many(models)
        del models
        if reference is not None:
            ref = _per_token(measured.pop(), reference.per_call_tokens)
            reference.observed_ms.append(ref.median_ms)
        measured = [_per_token(s, tokens) for s in measured]
        if reference is not None:
            if reference.baseline_ms is None:
                reference.baseline_ms = ref.median_ms
            measured = [_scaled(s, ref, reference.baseline_ms) for s in measured]
        samples += measured
        if on_progress:
            on_progress(len(chunk))
    return samples


def rebase(reference: Reference, *stages: list[LatencySample]) -> list[list[LatencySample]]:
    """`stages` (samples drift-corrected to `reference`'s baseline) moved to a new baseline, the median of the
    reference over every chunk it was timed in; the reference's `baseline_ms` becomes that median."""
    if reference.baseline_ms is None or not reference.observed_ms:
        return [list(samples) for samples in stages]
    baseline_ms = statistics.median(reference.observed_ms)
    factor = baseline_ms / reference.baseline_ms
    reference.baseline_ms = baseline_ms
    return [[_times(s, factor, reference_baseline_ms=baseline_ms,
                    drift_factor=float(s.protocol.get("drift_factor", 1.0)) * factor) for s in samples]
            for samples in stages]


def measure_archs(space: SearchSpace, archs: Sequence[Arch], meter: LatencyMeter, *, chunk_size: int = DEFAULT_CHUNK,
                  reference: Reference | None = None, on_progress: Progress | None = None) -> list[LatencySample]:
    """One latency sample per arch, in the order given; archs in one chunk are measured interleaved."""
    return _measure(len(archs), lambda i: _timing_pair(space, archs[i], meter), meter, chunk_size=chunk_size,
                    reference=reference, on_progress=on_progress, tokens=tokens_per_call(meter.device))


def measure_blocks(space: SearchSpace, blocks: Sequence[Block], meter: LatencyMeter, *,
                   chunk_size: int = 2 * DEFAULT_CHUNK, reference: Reference | None = None,
                   on_progress: Progress | None = None) -> list[LatencySample]:
    """One latency sample per block, each block timed alone on inputs of the device's batch and length (on a
    decode device: one new token, attention over the mean cached context)."""
    device = meter.device

    def build(i: int) -> tuple[nn.Module, Mapping[str, Tensor]]:
        if device.workload == "decode":
            return decode_space(space, device).build_decode_block(blocks[i], batch_size=device.batch_size,
                                                                  context_len=device.decode_context)
        return space.build_block(blocks[i], batch_size=device.batch_size, seq_len=device.seq_len)

    return _measure(len(blocks), build, meter, chunk_size=chunk_size, reference=reference, on_progress=on_progress)
