"""Measuring archs and blocks of a space on this machine, in interleaved chunks.

Models measured together are interleaved by the meter; chunks bound the memory held at once (a chunk
of full-size BERTs is a few hundred MB each). Weights are whatever `build_for_timing` gives: latency
depends on shapes, not values (MoE spaces keep seeded weights, since routing decides the work).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from latency_models.meter import LatencyMeter, LatencySample
from search_spaces.arch import Arch
from search_spaces.base import Block, SearchSpace

Progress = Callable[[int], None]
DEFAULT_CHUNK = 16


def _chunks(count: int, size: int) -> list[range]:
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def measure_archs(space: SearchSpace, archs: Sequence[Arch], meter: LatencyMeter, *, chunk_size: int = DEFAULT_CHUNK,
                  on_progress: Progress | None = None) -> list[LatencySample]:
    """One latency sample per arch, in the order given; archs in one chunk are measured interleaved."""
    device = meter.device
    samples: list[LatencySample] = []
    for chunk in _chunks(len(archs), chunk_size):
        models = []
        for i in chunk:
            arch = archs[i]
            space.validate(arch)
            models.append((space.build_for_timing(arch),
                           space.example_inputs(arch, batch_size=device.batch_size, seq_len=device.seq_len)))
        samples += meter.measure_many(models)
        del models
        if on_progress:
            on_progress(len(chunk))
    return samples


def measure_blocks(space: SearchSpace, blocks: Sequence[Block], meter: LatencyMeter, *,
                   chunk_size: int = 2 * DEFAULT_CHUNK, on_progress: Progress | None = None) -> list[LatencySample]:
    """One latency sample per block, each block timed alone on inputs of the device's batch and length."""
    device = meter.device
    samples: list[LatencySample] = []
    for chunk in _chunks(len(blocks), chunk_size):
        models = [space.build_block(blocks[i], batch_size=device.batch_size, seq_len=device.seq_len) for i in chunk]
        samples += meter.measure_many(models)
        del models
        if on_progress:
            on_progress(len(chunk))
    return samples
