from __future__ import annotations

import statistics
import time

import pytest
import torch

from latency_models.device import BUILTIN_DEVICES, DeviceProfile
from latency_models.measure import measure_archs
from latency_models.meter import MeterSettings, _quantile, make_meter
from latency_models.testing import MeterContract
from search_spaces.base import get_space, random_archs
from search_spaces.errors import LatencyError
from tests.conftest import TINY_SPACE_OPTIONS


class Counting(torch.nn.Module):
    def __init__(self, log: list[str], name: str) -> None:
        super().__init__()
        self.log, self.name = log, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        return x * 2


class Sleeper(torch.nn.Module):
    """A fixed workload (`sleep_s`), or one that slows down by `growth` on every call."""

    def __init__(self, sleep_s: float, growth: float = 1.0) -> None:
        super().__init__()
        self.sleep_s, self.growth = sleep_s, growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.sleep_s)
        self.sleep_s *= self.growth
        return x


def test_models_are_interleaved_and_runs_counted() -> None:
    log: list[str] = []
    settings = MeterSettings(warmup=1, repeats=2, min_rounds=3, max_rounds=3)
    meter = make_meter(BUILTIN_DEVICES["cpu-1t"], settings)
    inputs = {"x": torch.ones(1)}
    samples = meter.measure_many([(Counting(log, "a"), inputs), (Counting(log, "b"), inputs)])
    timed = log[2:]  # after one warm-up each
    assert len(timed) == 12 and timed.count("a") == 6
    rounds = [timed[i:i + 4] for i in range(0, 12, 4)]
    assert all(sorted(r) == ["a", "a", "b", "b"] for r in rounds)  # every round visits both models
    for s in samples:
        assert s.runs == 6 and s.p10_ms <= s.median_ms <= s.p90_ms
        assert s.protocol["threads"] == 1 and s.protocol["repeats"] == 2 and s.protocol["interleaved"]
        assert s.protocol["rounds"] == 3


def test_stops_once_the_median_is_stable() -> None:
    meter = make_meter(BUILTIN_DEVICES["cpu-1t"],
                         MeterSettings(warmup=1, repeats=3, min_rounds=2, max_rounds=20, tolerance=0.25))
    sample = meter.measure(Sleeper(0.004), {"x": torch.ones(1)})
    assert sample.protocol["stable"] and sample.protocol["rounds"] < 20
    assert sample.runs == 3 * sample.protocol["rounds"]
    assert 3.0 <= sample.median_ms  # at least the sleep itself


def test_a_drifting_workload_hits_the_cap_and_says_so() -> None:
    meter = make_meter(BUILTIN_DEVICES["cpu-1t"],
                         MeterSettings(warmup=0, repeats=2, min_rounds=2, max_rounds=5, tolerance=0.01))
    sample = meter.measure(Sleeper(0.0005, growth=1.5), {"x": torch.ones(1)})
    assert sample.protocol["rounds"] == 5 and not sample.protocol["stable"] and sample.runs == 10


def test_rounds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="min_rounds"):
        MeterSettings(min_rounds=5, max_rounds=2)


def test_threads_are_pinned_and_restored() -> None:
    before = torch.get_num_threads()
    seen: list[int] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return x

    make_meter(BUILTIN_DEVICES["cpu-1t"], MeterSettings(warmup=0, repeats=1, min_rounds=1, max_rounds=1)).measure(
        Probe(), {"x": torch.ones(1)})
    assert seen == [1] and torch.get_num_threads() == before


def test_quantiles_match_numpy() -> None:
    import numpy as np

    values = sorted([5.0, 1.0, 3.0, 9.0, 7.0, 2.0])
    for q in (0.1, 0.5, 0.9):
        assert _quantile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_median_of_a_fixed_workload_is_stable() -> None:
    """Two measurements of one matmul agree within a loose band (noise is real; no absolute limits)."""
    layer = torch.nn.Linear(256, 256)
    meter = make_meter(BUILTIN_DEVICES["cpu-1t"], MeterSettings(warmup=5, repeats=20, min_rounds=3, max_rounds=6))
    first, second = (meter.measure(layer, {"input": torch.randn(64, 256)}).median_ms for _ in range(2))
    assert 0.5 < first / second < 2.0


def test_bigger_archs_measure_slower_in_order_given() -> None:
    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    small = space.make_arch(d_model=16, layers=[{"attn_heads": 2, "ffn": {"kind": "none"}}])
    big = space.make_arch(d_model=32, layers=[{"attn_heads": 2, "ffn": {"kind": "dense", "width": 64}}] * 2)
    meter = make_meter(BUILTIN_DEVICES["cpu-1t"], MeterSettings(warmup=2, repeats=10, min_rounds=3, max_rounds=6))
    samples = measure_archs(space, [small, big, small], meter, chunk_size=2)
    assert len(samples) == 3 and samples[1].median_ms > max(samples[0].median_ms, samples[2].median_ms)
    assert len(random_archs(space, count=5, seed=1)) == 5


def test_meter_refuses_backends_it_cannot_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from latency_models.meter import METERS

    monkeypatch.delitem(METERS._classes, "cuda")  # a backend with no meter registered (every built-in has one)
    with pytest.raises(LatencyError, match="cannot be measured"):
        make_meter(DeviceProfile(name="a-gpu", backend="cuda"))


class SleepWork(torch.nn.Module):
    """Work that sleeps `sleep_s`, times the `machine`'s current slowdown: a machine whose speed a test sets."""

    def __init__(self, sleep_s: float, machine: dict[str, float]) -> None:
        super().__init__()
        self.sleep_s, self.machine = sleep_s, machine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.sleep_s * self.machine["slowdown"])
        return x


def test_reference_in_every_chunk_corrects_a_slowdown() -> None:
    """The machine turns 2x slower between chunks: rescaling by the reference gives back the true ratio."""
    from latency_models.measure import Reference, _measure

    machine = {"slowdown": 1.0}

    def build(i: int) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        machine["slowdown"] = 1.0 if i == 0 else 2.0  # the second chunk runs on a busier machine
        return SleepWork(0.004 * (i + 1), machine), {"x": torch.ones(1)}

    meter = make_meter(BUILTIN_DEVICES["cpu-1t"], MeterSettings(warmup=0, repeats=3, min_rounds=1, max_rounds=1))
    raw = _measure(2, build, meter, chunk_size=1, reference=None, on_progress=None)
    reference = Reference(SleepWork(0.004, machine), {"x": torch.ones(1)})
    corrected = _measure(2, build, meter, chunk_size=1, reference=reference, on_progress=None)
    assert raw[1].median_ms / raw[0].median_ms > 3.2  # 2x the work, 2x slower machine
    assert 1.6 < corrected[1].median_ms / corrected[0].median_ms < 2.5  # only the work's 2x is left
    assert corrected[1].protocol["drift_factor"] == pytest.approx(0.5, rel=0.25)


def test_a_profile_whose_first_chunk_ran_slow_is_rebased_to_the_typical_speed() -> None:
    """The machine is 1.6x slower for the first chunk only: drift-corrected to the first chunk's reference,
    every sample reads 1.6x what the work costs on the machine as it usually runs; rebased to the
    reference's median over all chunks, each reads what it costs."""
    from latency_models.measure import Reference, _measure, rebase

    machine = {"slowdown": 1.0}

    work_s = 0.02  # long enough that a loaded machine's late wake-ups stay a few per cent of it

    def build(i: int) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        machine["slowdown"] = 1.6 if i == 0 else 1.0
        return SleepWork(work_s, machine), {"x": torch.ones(1)}

    meter = make_meter(BUILTIN_DEVICES["cpu-1t"], MeterSettings(warmup=0, repeats=5, min_rounds=1, max_rounds=1))
    reference = Reference(SleepWork(work_s, machine), {"x": torch.ones(1)})
    corrected = _measure(5, build, meter, chunk_size=1, reference=reference, on_progress=None)
    work_ms = work_s * 1000
    # Every sample at the first chunk's speed: 1.6x the work.
    assert all(s.median_ms > 1.4 * work_ms for s in corrected), [s.median_ms for s in corrected]
    (rebased,) = rebase(reference, corrected)
    # The work's own time (sleep's overshoot aside).
    assert all(0.9 * work_ms < s.median_ms < 1.2 * work_ms for s in rebased), [s.median_ms for s in rebased]
    assert reference.baseline_ms == pytest.approx(statistics.median(reference.observed_ms))
    assert rebased[1].protocol["drift_factor"] == pytest.approx(
        reference.baseline_ms / rebased[1].protocol["reference_ms"])


class TestTorchCpuMeter(MeterContract):
    @pytest.fixture()
    def device(self) -> DeviceProfile:
        return BUILTIN_DEVICES["cpu-1t"]


class TestCudaMeter(MeterContract):
    @pytest.fixture()
    def device(self) -> DeviceProfile:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("no CUDA device on this machine")
        return DeviceProfile(name="cuda-test", backend="cuda", threads=1)


class TestOnnxRuntimeMeter(MeterContract):
    @pytest.fixture()
    def device(self) -> DeviceProfile:
        return DeviceProfile(name="ort-1t", backend="onnxruntime-cpu", threads=1)
