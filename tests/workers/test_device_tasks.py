"""Device-side work runs where the device is: a Ray node with its resource, else here when this is it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from latency_models.device import BUILTIN_DEVICES, DeviceProfile
from latency_models.meter import MeterSettings
from latency_models.profiler import ProfilePlan
from search_spaces.base import get_space, random_archs
from search_spaces.errors import LatencyError
from tests.conftest import TINY_SPACE_OPTIONS
from workers.device_tasks import DeviceRunner

FAST = MeterSettings(warmup=1, repeats=2, min_rounds=1, max_rounds=2)
SPACE = get_space("sparse-transformer", TINY_SPACE_OPTIONS)


def test_a_profile_of_this_machine_runs_here() -> None:
    runner = DeviceRunner(use_ray=False)
    device = BUILTIN_DEVICES["cpu-1t"]
    assert runner.placement(device) == "local"
    archs = random_archs(SPACE, count=3, seed=0)
    samples = runner.measure(device, SPACE.name, SPACE.options.model_dump(), archs, FAST)
    assert len(samples) == 3 and all(s.median_ms > 0 for s in samples)
    assert samples[0].protocol["measured_by"].endswith(f":{os.getpid()}")
    assert samples[0].protocol["device"] == "cpu-1t"


def test_a_foreign_device_with_no_node_fails_clearly() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so a cuda profile describes it")
    jetson = DeviceProfile(name="jetson-orin", backend="cuda")
    with pytest.raises(LatencyError, match="no Ray node advertises the resource 'jetson-orin'"):
        DeviceRunner(use_ray=False).measure(jetson, SPACE.name, {}, random_archs(SPACE, count=1, seed=0), FAST)
    too_many_threads = DeviceProfile(name="big-cpu", threads=(os.cpu_count() or 1) + 1)
    with pytest.raises(LatencyError, match="is not this machine"):
        DeviceRunner(use_ray=False).placement(too_many_threads)


def test_reserved_ray_names_are_refused() -> None:
    with pytest.raises(ValueError, match="Ray reserves"):
        DeviceProfile(name="GPU")


def test_profiling_reports_both_predictors_with_progress() -> None:
    seen: list[tuple[str, int, int]] = []
    plan = ProfilePlan(samples=12, overhead_samples=4, holdout=4, meter=FAST)
    outcome = DeviceRunner(use_ray=False).profile(BUILTIN_DEVICES["cpu-1t"], SPACE.name, SPACE.options.model_dump(),
                                                  plan, on_progress=lambda *a: seen.append(a))
    assert [p["kind"] for p in outcome.predictors] == ["lookup-table", "learned"]
    blocks = len(SPACE.block_catalogue())
    assert seen[-1][1] == seen[-1][2] == blocks + 12 + 2 * 4
    purposes = [s["purpose"] for s in outcome.samples]
    assert purposes.count("profile-train") == 12 and purposes.count("profile-holdout") == 4
    assert purposes.count("profile-holdout-repeat") == 4
    holdout = {s["arch_hash"] for s in outcome.samples if s["purpose"] == "profile-holdout"}
    assert not holdout & {s["arch_hash"] for s in outcome.samples if s["purpose"] == "profile-train"}
    for predictor in outcome.predictors:
        report = predictor["report"]
        assert report["n_holdout"] == 4 and report["profiling_s"] > 0 and report["predict_ms"] > 0
        assert set(report["noise_floor"]) >= {"mape", "within_5pct", "within_10pct", "kendall_tau"}
    by_kind = {p["kind"]: p for p in outcome.predictors}
    table, learned = by_kind["lookup-table"], by_kind["learned"]
    assert table["report"]["n_train"] == 4 and learned["report"]["n_train"] == 12
    assert table["report"]["profiling_s"] < outcome.timings_s["blocks"] + outcome.timings_s["overhead_samples"] + 5
    # The space's corners open every training set (the lookup table's small set included).
    from search_spaces.base import corner_archs

    train = [s["arch_hash"] for s in outcome.samples if s["purpose"] == "profile-train"]
    assert train[:2] == [a.hash for a in corner_archs(SPACE)] and len(set(train)) == 12
    # Each predictor keeps its drift reference, and reports its calibrated coverage.
    from latency_models.base import LatencyModel

    for predictor in outcome.predictors:
        model = LatencyModel.load(predictor["payload"], space=SPACE, device=BUILTIN_DEVICES["cpu-1t"])
        assert model.reference is not None and model.reference["ms"] > 0
        assert model.std_scale == predictor["report"]["std_scale"] > 0
        assert 0 <= predictor["report"]["within_1std"] <= predictor["report"]["within_2std"] <= 100


@pytest.mark.ray
@pytest.mark.slow
class TestOnRay:
    @pytest.fixture(scope="class")
    def cluster(self) -> Iterator[None]:
        from workers.executors.ray_executor import ensure_ray, import_ray

        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        ensure_ray(address=None, num_cpus=2, resources={"edge-box": 1})
        yield
        import_ray().shutdown()

    def test_work_goes_to_the_node_with_the_device_resource(self, cluster: None) -> None:
        runner = DeviceRunner(use_ray=True)
        edge = DeviceProfile(name="edge-box", threads=1, seq_len=16)
        assert runner.placement(edge) == "ray"
        samples = runner.measure(edge, SPACE.name, SPACE.options.model_dump(), random_archs(SPACE, count=2, seed=0),
                                 FAST)
        assert len(samples) == 2 and not samples[0].protocol["measured_by"].endswith(f":{os.getpid()}")
        assert samples[0].protocol["device"] == "edge-box"

    def test_without_the_resource_only_this_machine_runs_locally(self, cluster: None) -> None:
        runner = DeviceRunner(use_ray=True)
        assert runner.placement(BUILTIN_DEVICES["cpu-1t"]) == "local"
        with pytest.raises(LatencyError, match="no Ray node advertises"):
            runner.placement(DeviceProfile(name="far-away", threads=256))  # more threads than this machine has
