"""A stored predictor is re-anchored at each job's start: its drift reference is timed on the device now and
its predictions scaled by (now / then), so that a drifted machine or a sister device needs no new profile."""

from __future__ import annotations

import pytest

from latency_models.base import FitSample
from latency_models.device import BUILTIN_DEVICES
from latency_models.lookup_table import LookupTableLatencyModel
from latency_models.profiler import ProfilePlan
from nas.db.storage import open_storage
from nas.engine.latency import job_latency_model
from search_spaces.base import get_space, random_archs
from tests.conftest import TINY_SPACE_OPTIONS
from tests.fakes import FakeDeviceRunner, fake_latency_ms

SPACE = get_space("sparse-transformer", TINY_SPACE_OPTIONS)


def _store(storage, *, with_reference: bool):  # type: ignore[no-untyped-def]
    device = BUILTIN_DEVICES["cpu-1t"]
    model = LookupTableLatencyModel(space=SPACE, device=device,
                                    block_ms={b.key: 0.01 for b in SPACE.block_catalogue()})
    archs = random_archs(SPACE, count=12, seed=0)
    model.fit([FitSample(a, fake_latency_ms(SPACE, a)) for a in archs])
    if with_reference:  # the reference, and two anchors (the corners in a real profile)
        model.reference = {"arch": archs[0].to_dict(), "ms": fake_latency_ms(SPACE, archs[0]),
                           "anchors": [{"arch": a.to_dict(), "ms": fake_latency_ms(SPACE, a)} for a in archs[5:7]]}
    storage.add_latency_model(device=device.name, space=SPACE.name, space_version=SPACE.version,
                              space_key=SPACE.latency_key(), space_signature=SPACE.latency_signature(),
                              kind="lookup-table", payload=model.save(), report={"mape": 1.0})
    return model, archs


@pytest.mark.parametrize("factor", [0.8, 1.5])
def test_a_stored_predictor_is_reanchored_to_the_device_now(sqlite_url: str, factor: float) -> None:
    storage = open_storage(sqlite_url)
    stored, archs = _store(storage, with_reference=True)
    runner = FakeDeviceRunner(factor=factor)  # the device now runs everything `factor` times as long
    model, info = job_latency_model(storage, runner, device=BUILTIN_DEVICES["cpu-1t"], space=SPACE, kind="auto",
                                    plan=ProfilePlan())
    assert runner.measured == [archs[0].hash, archs[5].hash, archs[6].hash]  # the anchors, once each
    assert info["drift_factor"] == pytest.approx(factor)
    for arch in archs[1:5]:
        assert model.predict(arch).mean_ms == pytest.approx(factor * stored.predict(arch).mean_ms)
        assert model.predict(arch).std_ms == pytest.approx(factor * stored.predict(arch).std_ms)


def test_a_predictor_without_a_reference_predicts_as_profiled(sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    stored, archs = _store(storage, with_reference=False)
    runner = FakeDeviceRunner(factor=2.0)
    model, info = job_latency_model(storage, runner, device=BUILTIN_DEVICES["cpu-1t"], space=SPACE, kind="auto",
                                    plan=ProfilePlan())
    assert runner.measured == [] and info["drift_factor"] == 1.0
    assert model.predict(archs[3]).mean_ms == stored.predict(archs[3]).mean_ms
