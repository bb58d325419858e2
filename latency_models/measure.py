"""Measuring archs and blocks of a space on this machine, in interleaved chunks, drift-corrected.

Models measured together are interleaved by the meter; chunks bound the memory held at once (a chunk
of full-size BERTs is a few hundred MB each). Weights are whatever `build_for_timing` gives: latency
depends on shapes, not values (MoE spaces keep seeded weights, since routing decides the work).

A shared machine drifts: the same model can run 5% slower for a minute, or 50% slower while another
process holds the core. With a `Reference` (one fixed model), every chunk also times the reference,
and the chunk's figures are scaled by `reference baseline / reference now`, so that samples taken at
different times are comparable. The protocol of each sample records the reference's figures and
the factor applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from latency_models.meter import LatencyMeter, LatencySample
from search_spaces.arch import Arch
from search_spaces.base import Block, SearchSpace

if TYPE_CHECKING:
    from torch import Tensor, nn

Progress = Callable[[int], None]
Builder = Callable[[int], "tuple[nn.Module, Mapping[str, Tensor]]"]
DEFAULT_CHUNK = 16


@dataclass
class Reference:
    """A fixed model timed in every chunk; `baseline_ms` is its first median (or given)."""

    model: nn.Module
    inputs: Mapping[str, Tensor]
    baseline_ms: float | None = None

    @classmethod
    def for_arch(cls, space: SearchSpace, arch: Arch, meter: LatencyMeter) -> Reference:
        return cls(*_timing_pair(space, arch, meter))


def _timing_pair(space: SearchSpace, arch: Arch, meter: LatencyMeter) -> tuple[nn.Module, Mapping[str, Tensor]]:
    """The arch's network for timing, with inputs of the device's batch and length."""
    device = meter.device
    space.validate(arch)
    return (space.build_for_timing(arch),
            space.example_inputs(arch, batch_size=device.batch_size, seq_len=device.seq_len))


def _scaled(sample: LatencySample, reference: LatencySample, baseline_ms: float) -> LatencySample:
    factor = baseline_ms / reference.median_ms
    return LatencySample(median_ms=sample.median_ms * factor, p10_ms=sample.p10_ms * factor,
                         p90_ms=sample.p90_ms * factor, runs=sample.runs,
                         protocol={**sample.protocol, "reference_ms": reference.median_ms,
                                   "reference_baseline_ms": baseline_ms, "drift_factor": factor})


def _measure(count: int, build: Builder, meter: LatencyMeter, *, chunk_size: int, reference: Reference | None,
             on_progress: Progress | None) -> list[LatencySample]:
    samples: list[LatencySample] = []
    for start in range(0, count, chunk_size):
        chunk = range(start, min(start + chunk_size, count))
        models = [build(i) for i in chunk]
        if reference is not None:
            models.append((reference.model, reference.inputs))
        measured = meter.measure_many(models)
        del models
        if reference is not None:
            ref = measured.pop()
            if reference.baseline_ms is None:
                reference.baseline_ms = ref.median_ms
            measured = [_scaled(s, ref, reference.baseline_ms) for s in measured]
        samples += measured
        if on_progress:
            on_progress(len(chunk))
    return samples


def measure_archs(space: SearchSpace, archs: Sequence[Arch], meter: LatencyMeter, *, chunk_size: int = DEFAULT_CHUNK,
                  reference: Reference | None = None, on_progress: Progress | None = None) -> list[LatencySample]:
    """One latency sample per arch, in the order given; archs in one chunk are measured interleaved."""
    return _measure(len(archs), lambda i: _timing_pair(space, archs[i], meter), meter, chunk_size=chunk_size, reference=reference, on_progress=on_progress)


def measure_blocks(space: SearchSpace, blocks: Sequence[Block], meter: LatencyMeter, *,
                   chunk_size: int = 2 * DEFAULT_CHUNK, reference: Reference | None = None,
                   on_progress: Progress | None = None) -> list[LatencySample]:
    """One latency sample per block, each block timed alone on inputs of the device's batch and length."""
    device = meter.device

    def build(i: int) -> tuple[nn.Module, Mapping[str, Tensor]]:
        return space.build_block(blocks[i], batch_size=device.batch_size, seq_len=device.seq_len)

    return _measure(len(blocks), build, meter, chunk_size=chunk_size, reference=reference, on_progress=on_progress)
