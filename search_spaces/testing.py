"""The contract every search space passes, shipped for plug-in authors (as Optuna ships `optuna.testing`).

    from search_spaces.testing import SpaceContract

    class TestMySpace(SpaceContract):
        @pytest.fixture()
        def space(self): return get_space("my-space", {...})
        @pytest.fixture()
        def bad_archs(self): return [...]          # archs `validate` must refuse
        def expected_outputs(self, arch): return ...  # the logits' last dimension

A space with a weight-sharing supernet also passes `SupernetContract` (the same `space` fixture).

Needs pytest, optuna and torch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from search_spaces.arch import Arch
from search_spaces.base import SearchSpace, SupernetSpace
from search_spaces.errors import InvalidArchError

# Small sparse-transformer options (two layers, widths 16 and 32): what the latency-model, executor and
# task suites build candidates from, fast enough for a unit test.
SMALL_SPACE_OPTIONS = {"max_seq_len": 32, "max_layers": 2, "d_model_choices": [16, 32], "heads_choices": [0, 2],
                       "dense_width_choices": [32, 64], "moe_experts_choices": [2, 4], "moe_top_k_choices": [1, 2],
                       "moe_width_choices": [16, 32]}


def sample_hashes(space: SearchSpace, *, seed: int, count: int) -> list[str]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    hashes = []
    for _ in range(count):
        trial = study.ask()
        hashes.append(space.sample(trial).hash)
        study.tell(trial, 0.0)
    return hashes


class SpaceContract:
    """Every search space passes this suite. Provide `space` and `bad_archs` fixtures."""

    @pytest.fixture()
    def archs(self, space: SearchSpace) -> list[Arch]:
        import optuna

        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
        result = []
        for _ in range(6):
            trial = study.ask()
            result.append(space.sample(trial))
            study.tell(trial, 0.0)
        return result

    def test_same_seed_same_archs(self, space: SearchSpace) -> None:
        assert sample_hashes(space, seed=7, count=8) == sample_hashes(space, seed=7, count=8)
        assert sample_hashes(space, seed=7, count=8) != sample_hashes(space, seed=8, count=8)

    def test_sampled_archs_validate_and_round_trip(self, space: SearchSpace, archs: list[Arch]) -> None:
        for arch in archs:
            space.validate(arch)
            again = Arch.from_dict(arch.to_dict())
            assert again == arch and again.hash == arch.hash

    def test_validate_rejects_bad_archs(self, space: SearchSpace, bad_archs: list[Arch]) -> None:
        assert bad_archs
        for arch in bad_archs:
            with pytest.raises(InvalidArchError):
                space.validate(arch)

    def test_rejects_arch_of_another_space(self, space: SearchSpace, archs: list[Arch]) -> None:
        foreign = Arch(space="another-space", version=archs[0].version, config_json=archs[0].config_json)
        with pytest.raises(InvalidArchError):
            space.validate(foreign)

    def test_encode_is_fixed_length_and_deterministic(self, space: SearchSpace, archs: list[Arch]) -> None:
        names = space.feature_names()
        for arch in archs:
            features = space.encode(arch)
            assert len(features) == len(names)
            assert features == space.encode(arch)
        assert len({tuple(space.encode(a)) for a in archs}) == len({a.hash for a in archs})

    def test_blocks_describe_every_arch(self, space: SearchSpace, archs: list[Arch]) -> None:
        for arch in archs:
            blocks = space.blocks(arch)
            assert blocks and all(isinstance(b.key, str) and b.key for b in blocks)

    def test_blocks_build_alone_and_cover_the_network(self, space: SearchSpace, archs: list[Arch]) -> None:
        """Each block runs in isolation, and the blocks' parameters add up to the network's."""
        import torch

        for arch in archs:
            block_params = 0
            for block in space.blocks(arch):
                module, inputs = space.build_block(block, batch_size=1, seq_len=8)
                with torch.inference_mode():
                    out = module(**inputs)
                assert out.shape[0] == 1 and torch.isfinite(out.float()).all(), block.key
                block_params += sum(p.numel() for p in module.parameters())
            assert block_params == sum(p.numel() for p in space.build(arch).parameters()), arch.config

    def test_catalogue_holds_every_sampled_block(self, space: SearchSpace) -> None:
        from search_spaces.base import random_archs

        catalogue = {b.key for b in space.block_catalogue()}
        assert len(catalogue) == len(space.block_catalogue())  # distinct
        for arch in random_archs(space, count=40, seed=11):
            assert {b.key for b in space.blocks(arch)} <= catalogue

    def test_latency_key_is_stable(self, space: SearchSpace) -> None:
        again = type(space)(space.options)
        assert space.latency_key() == again.latency_key() and len(space.latency_key()) == 16

    def test_build_gives_output_shapes(self, space: SearchSpace, archs: list[Arch]) -> None:
        for arch in archs:
            model = space.build(arch, seed=0)
            inputs = space.example_inputs(arch, batch_size=2, seq_len=8)
            out = model(**inputs)
            assert out.logits.shape[:2] == inputs["input_ids"].shape
            assert out.logits.shape[-1] == self.expected_outputs(arch)

    def test_build_is_seeded(self, space: SearchSpace, archs: list[Arch]) -> None:
        import torch

        a, b = space.build(archs[0], seed=5), space.build(archs[0], seed=5)
        for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(p, q), name

    def test_export_and_reload_give_equal_outputs(self, space: SearchSpace, archs: list[Arch], tmp_path: Path) -> None:
        import torch

        arch = archs[0]
        model = space.build(arch, seed=1).eval()
        inputs = space.example_inputs(arch, batch_size=2, seq_len=8)
        folder = space.export(model, arch, tmp_path / "ckpt", model_card="# test")
        reloaded = space.load_exported(folder).eval()
        with torch.no_grad():
            torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=1e-6)

    def expected_outputs(self, arch: Arch) -> int:
        """The size of the logits' last dimension for `arch` (vocabulary, labels)."""
        raise NotImplementedError(f"{type(self).__name__} must say how many outputs an arch has")


class SupernetContract:
    """Every space with a weight-sharing supernet (`SupernetSpace`) passes this suite. Provide `space`."""

    def test_an_arch_on_the_supernet_equals_its_inherited_model(self, space: SearchSpace) -> None:
        import optuna
        import torch

        assert isinstance(space, SupernetSpace)
        supernet = space.build_supernet(seed=0).eval()
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
        archs = [*space.sandwich_archs(), *(space.sample(study.ask()) for _ in range(6))]
        for arch in archs:
            space.validate(arch)
            inputs = space.example_inputs(arch, batch_size=2, seq_len=8)
            model = space.inherit(supernet, arch)
            with torch.no_grad():
                expected = space.supernet_logits(supernet, inputs, arch)
                got = model(**inputs).logits
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
            assert sum(p.numel() for p in model.parameters()) <= sum(p.numel() for p in supernet.parameters())

    def test_the_same_seed_gives_the_same_supernet(self, space: SearchSpace) -> None:
        import torch

        assert isinstance(space, SupernetSpace)
        first, second = space.build_supernet(seed=1).state_dict(), space.build_supernet(seed=1).state_dict()
        assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)

    def test_the_largest_arch_is_at_least_as_large_as_the_smallest(self, space: SearchSpace) -> None:
        assert isinstance(space, SupernetSpace)
        largest, smallest = space.sandwich_archs()
        supernet = space.build_supernet(seed=0)
        big = sum(p.numel() for p in space.inherit(supernet, largest).parameters())
        assert big >= sum(p.numel() for p in space.inherit(supernet, smallest).parameters())
