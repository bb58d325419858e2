"""The space's corners anchor every fit and each job's re-anchoring, so the profiler times each of them in
several chunks and keeps the middle timing: one chunk's timing of an arch can be 15% off."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import latency_models.profiler as profiler
from latency_models.device import BUILTIN_DEVICES
from latency_models.meter import LatencySample
from latency_models.profiler import ProfilePlan, profile
from search_spaces.base import corner_archs, get_space
from tests.conftest import TINY_SPACE_OPTIONS
from tests.fakes import fake_latency_ms

SPACE = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
CORNER_FACTORS = (1.5, 1.0, 0.9)  # a corner's first timing is 50% slow, its second right, its third 10% fast


@pytest.fixture()
def timings(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """A meter stand-in: every arch at its fake latency, but a corner at `CORNER_FACTORS[n]` of it on its n-th
    timing; returns how often each arch was timed."""
    corners = {a.hash for a in corner_archs(SPACE)}
    count: Counter[str] = Counter()

    def measure_archs(space: Any, archs: list[Any], meter: Any, **_: Any) -> list[LatencySample]:
        samples = []
        for arch in archs:
            factor = CORNER_FACTORS[count[arch.hash]] if arch.hash in corners else 1.0
            count[arch.hash] += 1
            ms = factor * fake_latency_ms(space, arch)
            samples.append(LatencySample(median_ms=ms, p10_ms=ms, p90_ms=ms, runs=1, protocol={}))
        return samples

    monkeypatch.setattr(profiler, "measure_archs", measure_archs)
    return count


@pytest.mark.parametrize("corner_timings, kept", [(3, 1.0), (1, 1.5)])
def test_each_corner_is_timed_in_several_chunks_and_its_middle_timing_fitted(
        timings: Counter[str], corner_timings: int, kept: float) -> None:
    plan = ProfilePlan(samples=12, overhead_samples=4, holdout=2, kinds=("learned",), drift_correction=False,
                       corner_timings=corner_timings)
    outcome = profile(SPACE, BUILTIN_DEVICES["cpu-1t"], plan)
    fitted = {s["arch_hash"]: s["sample"]["median_ms"] for s in outcome.samples if s["purpose"] == "profile-train"}
    for corner in corner_archs(SPACE):
        assert timings[corner.hash] == corner_timings
        assert fitted[corner.hash] == pytest.approx(kept * fake_latency_ms(SPACE, corner))
    others = [h for h in fitted if h not in {c.hash for c in corner_archs(SPACE)}]
    assert others and all(timings[h] == 1 for h in others)
