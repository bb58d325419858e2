"""The transfer latency model: another device's predictor, corrected by a few samples of this device."""

from __future__ import annotations

import math

import pytest

from latency_models.base import FitSample, LatencyModel, ProfileData
from latency_models.device import BUILTIN_DEVICES
from latency_models.lookup_table import LookupTableLatencyModel
from latency_models.transfer import TransferLatencyModel
from search_spaces.base import get_space, random_archs
from search_spaces.errors import LatencyError
from tests.conftest import TINY_SPACE_OPTIONS
from latency_models.testing import LatencyModelContract, synthetic_latency_ms
from tests.fakes import fake_latency_ms

SPACE = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
OLD, NEW = BUILTIN_DEVICES["cpu-1t"], BUILTIN_DEVICES["cpu-2t"]


def _source() -> LookupTableLatencyModel:
    model = LookupTableLatencyModel(space=SPACE, device=OLD, block_ms={b.key: 0.01 for b in SPACE.block_catalogue()})
    model.fit([FitSample(a, fake_latency_ms(SPACE, a)) for a in random_archs(SPACE, count=12, seed=0)])
    return model


def test_a_power_law_between_devices_is_recovered_from_a_few_samples() -> None:
    source = _source()
    archs = random_archs(SPACE, count=60, seed=5)

    def new_ms(arch):  # type: ignore[no-untyped-def]  # the new device: 2x, growing a little slower with size
        return 2.0 * source.predict(arch).mean_ms ** 0.9

    fitted = TransferLatencyModel.from_profile(
        space=SPACE, device=NEW, data=ProfileData(samples=[FitSample(a, new_ms(a)) for a in archs[:10]],
                                                  overhead_count=10, source=source)).model
    assert fitted.coef[1] == pytest.approx(0.9) and fitted.coef[0] == pytest.approx(math.log(2.0))
    for arch in archs[10:]:
        assert fitted.predict(arch).mean_ms == pytest.approx(new_ms(arch))
    restored = LatencyModel.load(fitted.save(), space=SPACE, device=NEW)  # the source travels inside
    assert isinstance(restored, TransferLatencyModel) and restored.source is not None
    assert restored.predict(archs[20]).mean_ms == pytest.approx(new_ms(archs[20]))
    with pytest.raises(LatencyError, match="at least 3"):
        TransferLatencyModel.from_profile(space=SPACE, device=NEW, data=ProfileData(
            samples=[FitSample(archs[0], 1.0)], overhead_count=1, source=source))


def test_transfer_needs_a_source_and_is_never_a_default_kind() -> None:
    from latency_models.base import latency_model_names

    assert "transfer" not in latency_model_names() and "transfer" in latency_model_names(with_source=True)
    with pytest.raises(LatencyError, match="--transfer-from"):
        TransferLatencyModel.from_profile(space=SPACE, device=NEW, data=ProfileData(samples=[], overhead_count=0))


class TestTransferContract(LatencyModelContract):
    """The latency-model contract, with a learned source fitted on another device running at half the speed."""

    def make_model(self, space, device):  # type: ignore[no-untyped-def]
        from latency_models.device import DeviceProfile
        from latency_models.learned import LearnedLatencyModel

        other = DeviceProfile(name="other-cpu", threads=1)
        source = LearnedLatencyModel(space=space, device=other)
        source.fit([FitSample(a, 2.0 * synthetic_latency_ms(space, a)) for a in random_archs(space, count=80, seed=9)])
        return TransferLatencyModel(space=space, device=device, source=source)


def test_a_device_that_changes_what_each_block_kind_costs_is_followed_kind_by_kind() -> None:
    """A new device where attention costs three times what it did and mixture-of-experts blocks half: no
    rescale of the source can follow (it keeps the source's ranking); the kind-wise form, fitted on 20
    samples, predicts held-out archs within 1%, and ranks them as the device does."""
    from scipy.stats import kendalltau

    blocks = SPACE.block_catalogue()
    source = LookupTableLatencyModel(space=SPACE, device=OLD, block_ms={
        b.key: 0.01 + 0.002 * i for i, b in enumerate(blocks)})
    source.coef, source.fitted = (1.0, 0.0, 0.05), True
    factor = {"attention": 3.0, "moe": 0.5}

    def new_ms(arch):  # type: ignore[no-untyped-def]
        return 0.08 + sum(factor.get(b.kind, 1.0) * source.block_ms[b.key] for b in SPACE.blocks(arch))

    archs = random_archs(SPACE, count=80, seed=11)
    fitted = TransferLatencyModel.from_profile(
        space=SPACE, device=NEW, data=ProfileData(samples=[FitSample(a, new_ms(a)) for a in archs[:20]],
                                                  overhead_count=20, source=source)).model
    assert fitted.mode == "kinds"
    held_out = archs[20:]
    assert all(fitted.predict(a).mean_ms == pytest.approx(new_ms(a), rel=0.01) for a in held_out)
    predicted, truth = [fitted.predict(a).mean_ms for a in held_out], [new_ms(a) for a in held_out]
    assert kendalltau(predicted, truth).statistic > 0.95
    restored = LatencyModel.load(fitted.save(), space=SPACE, device=NEW)
    assert restored.predict(held_out[0]).mean_ms == pytest.approx(fitted.predict(held_out[0]).mean_ms)
    unseen = dict(fitted.kind_weights)
    unseen.pop("moe")
    fitted.kind_weights = unseen  # as if no sample had an MoE block: such archs fall back to the rescale
    with_moe = next(a for a in held_out if any(b.kind == "moe" for b in SPACE.blocks(a)))
    a, b = fitted.coef
    rescale_ms = math.exp(a + b * math.log(source.predict(with_moe).mean_ms))
    assert fitted.predict(with_moe).mean_ms == pytest.approx(rescale_ms)
    rescaled = TransferLatencyModel(space=SPACE, device=NEW, source=source)  # what a rescale alone can do
    rescaled.mode, rescaled.coef, rescaled.fitted = "rescale", fitted.coef, True
    assert kendalltau([rescaled.predict(a).mean_ms for a in held_out], truth).statistic < 0.95


def test_moe_blocks_whose_cost_scales_with_their_expert_count_are_weighted_family_by_family() -> None:
    """ONNX Runtime runs an MoE block as a subgraph per expert, torch as one grouped matmul: on such a
    device a 4-expert block costs relatively more than a 2-expert one, which one weight for every MoE block
    cannot follow. The space groups MoE blocks by expert count (`block_family`), and the transfer's fourth
    form, picked by leave-one-out error, weights each family: held-out archs within 1%."""
    blocks = SPACE.block_catalogue()
    assert {SPACE.block_family(b) for b in blocks if b.kind == "moe"} == {"moe/experts=2", "moe/experts=4"}
    assert {SPACE.block_family(b) for b in blocks if b.kind != "moe"} == {b.kind for b in blocks if b.kind != "moe"}
    source = LookupTableLatencyModel(space=SPACE, device=OLD, block_ms={
        b.key: 0.01 + 0.002 * i for i, b in enumerate(blocks)})
    source.coef, source.fitted = (1.0, 0.0, 0.05), True

    def new_ms(arch):  # type: ignore[no-untyped-def]
        def factor(block):  # type: ignore[no-untyped-def]
            return {"moe/experts=2": 0.4, "moe/experts=4": 1.6, "attention": 2.0}.get(SPACE.block_family(block), 1.0)
        return 0.08 + sum(factor(b) * source.block_ms[b.key] for b in SPACE.blocks(arch))

    archs = random_archs(SPACE, count=80, seed=11)
    samples = [FitSample(a, new_ms(a)) for a in archs[:20]]
    fitted = TransferLatencyModel.from_profile(space=SPACE, device=NEW, data=ProfileData(
        samples=samples, overhead_count=20, source=source)).model
    assert fitted.mode == "families" and set(fitted.kind_weights) >= {"moe/experts=2", "moe/experts=4"}
    held_out = archs[20:]
    assert all(fitted.predict(a).mean_ms == pytest.approx(new_ms(a), rel=0.01) for a in held_out)
    restored = LatencyModel.load(fitted.save(), space=SPACE, device=NEW)
    assert restored.mode == "families"
    assert restored.predict(held_out[0]).mean_ms == pytest.approx(fitted.predict(held_out[0]).mean_ms)
    by_kind = TransferLatencyModel(space=SPACE, device=NEW, source=source)  # one weight for all MoE blocks
    by_kind.mode, by_kind.coef, by_kind.fitted = "kinds", fitted.coef, True
    names, rows, targets = by_kind._kind_rows(samples, families=False)  # type: ignore[misc]
    from latency_models.transfer import _fit_kinds

    by_kind.kind_weights = dict(zip([*names, "constant"], _fit_kinds(rows, targets)))
    missed = [a for a in held_out if by_kind.predict(a).mean_ms != pytest.approx(new_ms(a), rel=0.01)]
    assert len(missed) > len(held_out) // 4
