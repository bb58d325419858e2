"""Reusable contract suites. Each implementation's test module subclasses one and provides fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from search_spaces.arch import Arch
from search_spaces.base import SearchSpace
from search_spaces.errors import InvalidArchError


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
        raise NotImplementedError


MakeStrategy = Callable[[str, int], Any]  # (study name, seed) -> a Strategy over the test's database
RecordTrials = Callable[[str], list[Any]]  # study name -> the trials the database holds (Optuna FrozenTrials)


def toy_sample(trial: object) -> dict[str, object]:
    """A small mixed search space, sampled the way spaces sample (suggest_* on the strategy's trial)."""
    return {"width": trial.suggest_int("width", 1, 64, log=True),  # type: ignore[attr-defined]
            "kind": trial.suggest_categorical("kind", ["dense", "moe", "none"]),  # type: ignore[attr-defined]
            "ratio": trial.suggest_float("ratio", 0.0, 1.0)}  # type: ignore[attr-defined]


class StrategyContract:
    """Every strategy passes this suite. Provide fixtures `make` (a `MakeStrategy` over one database) and
    `record_trials` (a `RecordTrials` reading that database)."""

    def test_asks_a_batch_and_stores_it_before_returning(self, make: MakeStrategy,
                                                         record_trials: RecordTrials) -> None:
        strategy = make("s", 0)
        asked = strategy.ask_batch(4, toy_sample)
        assert [number for number, _ in asked] == [0, 1, 2, 3]
        stored = {t.number: t for t in record_trials("s")}
        assert sorted(stored) == [0, 1, 2, 3]
        for number, arch in asked:
            assert stored[number].state.name == "RUNNING"
            assert stored[number].params == arch

    def test_tells_reach_the_database(self, make: MakeStrategy, record_trials: RecordTrials) -> None:
        strategy = make("s", 0)
        asked = [number for number, _ in strategy.ask_batch(3, toy_sample)]
        strategy.tell(asked[0], [0.5, 2.0], constraint=-1.0)
        strategy.tell_failed(asked[1])
        strategy.tell_stopped(asked[2])
        strategy.tell(asked[0], [0.9, 9.0], constraint=5.0)  # a second tell changes nothing
        stored = {t.number: t for t in record_trials("s")}
        assert stored[asked[0]].state.name == "COMPLETE" and stored[asked[0]].values == [0.5, 2.0]
        assert stored[asked[1]].state.name == "FAIL" and stored[asked[2]].state.name == "PRUNED"
        assert strategy.open_numbers() == []

    def test_a_new_object_resumes_the_study(self, make: MakeStrategy, record_trials: RecordTrials) -> None:
        first = make("s", 0)
        asked = [number for number, _ in first.ask_batch(3, toy_sample)]
        first.tell(asked[0], [0.1, 1.0], constraint=0.0)
        second = make("s", 0)
        assert sorted(second.open_numbers()) == asked[1:]
        second.tell_failed(asked[1])
        assert [number for number, _ in second.ask_batch(2, toy_sample)] == [3, 4]
        assert sorted(t.number for t in record_trials("s")) == [0, 1, 2, 3, 4]

    def test_same_seed_same_proposals(self, make: MakeStrategy) -> None:
        def run(study: str, seed: int) -> list[dict[str, object]]:
            strategy = make(study, seed)
            archs = []
            for round_ in range(4):
                batch = strategy.ask_batch(3, toy_sample)
                for number, arch in batch:
                    strategy.tell(number, [float(arch["ratio"]), float(arch["width"])], constraint=float(round_ - 2))
                    archs.append(arch)
            return archs

        assert run("a", 1) == run("b", 1)
        assert run("c", 1) != run("d", 2)
