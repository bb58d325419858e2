"""Sandwich-rule training of the sparse-transformer supernet: the largest and the smallest arch both learn
from the shared weights, and the same seed gives the same supernet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search_spaces.sparse_transformer.supernet import SparseSupernet
from tests.conftest import TINY_SPACE_OPTIONS
from workers.evaluate import task_and_space
from workers.supernet_training import (SupernetTask, largest_arch, lm_loss, run_supernet_task, smallest_arch,
                                       train_supernet)


@pytest.fixture()
def bound(corpus_file: Path):  # type: ignore[no-untyped-def]
    return task_and_space("sparse-transformer", TINY_SPACE_OPTIONS,
                          {"kind": "language-modeling", "train": str(corpus_file), "seq_len": 16, "batch_size": 8})


def test_the_sandwich_ends_are_valid_archs_at_the_bounds(bound) -> None:  # type: ignore[no-untyped-def]
    _, space = bound
    largest, smallest = largest_arch(space), smallest_arch(space)
    o = space.options
    assert largest.config["d_model"] == max(o.d_model_choices) and len(largest.config["layers"]) == o.max_layers
    assert smallest.config["d_model"] == min(o.d_model_choices) and len(smallest.config["layers"]) == o.min_layers
    assert largest.config["layers"][0]["ffn"]["experts"] == max(o.moe_experts_choices)


def test_the_largest_and_the_smallest_arch_both_learn(bound) -> None:  # type: ignore[no-untyped-def]
    task, space = bound
    supernet = SparseSupernet(space.options, seed=0)
    (held_out,) = task.sample_batches(count=1, seed=10_000)

    def losses() -> tuple[float, float]:
        with torch.no_grad():
            return tuple(float(lm_loss(supernet(held_out["input_ids"], arch), held_out["labels"]))
                         for arch in (largest_arch(space), smallest_arch(space)))  # type: ignore[return-value]

    before = losses()
    history = train_supernet(supernet, space, task, steps=40, seed=0)
    after = losses()
    assert len(history) == 40 and after[0] < 0.8 * before[0] and after[1] < 0.8 * before[1], (before, after)


def test_the_same_seed_gives_the_same_supernet(bound) -> None:  # type: ignore[no-untyped-def]
    task, space = bound
    first, second = SparseSupernet(space.options, seed=0), SparseSupernet(space.options, seed=0)
    train_supernet(first, space, task, steps=3, seed=4)
    train_supernet(second, space, task, steps=3, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def _supernet_task(corpus_file: Path, cache: Path, *, steps: int) -> SupernetTask:
    return SupernetTask(space="sparse-transformer", space_options=TINY_SPACE_OPTIONS,
                        task={"kind": "language-modeling", "train": str(corpus_file), "seq_len": 16, "batch_size": 8},
                        steps=steps, seed=3, cache_dir=str(cache), checkpoint_every_s=0.0)


def test_a_trained_supernet_is_cached_by_its_key(corpus_file: Path, tmp_path: Path) -> None:
    first = run_supernet_task(_supernet_task(corpus_file, tmp_path / "cache", steps=4))
    assert not first.cached and Path(first.path).is_file()
    # the same data under another path (another upload, another job) is the same supernet
    copy = tmp_path / "elsewhere.txt"
    copy.write_bytes(corpus_file.read_bytes())
    again = run_supernet_task(_supernet_task(copy, tmp_path / "cache", steps=4))
    assert again.cached and again.path == first.path and again.key == first.key
    other = run_supernet_task(_supernet_task(corpus_file, tmp_path / "cache", steps=5))
    assert not other.cached and other.key != first.key
    from dataclasses import replace
    from safetensors.torch import load_file

    distilled = run_supernet_task(replace(_supernet_task(corpus_file, tmp_path / "cache", steps=4), distill=True))
    assert not distilled.cached and distilled.key != first.key  # another recipe, another supernet
    plain, taught = load_file(first.path), load_file(distilled.path)
    assert any(not torch.equal(plain[k], taught[k]) for k in plain)  # the option reaches the training


def test_a_stopped_supernet_resumes_from_its_checkpoint_and_ends_as_if_never_stopped(
        corpus_file: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    steps_seen: list[int] = []
    with pytest.raises(InterruptedError):  # killed after 3 steps (a checkpoint every step here)
        run_supernet_task(_supernet_task(corpus_file, tmp_path / "a", steps=6),
                          progress=lambda step, total, loss: steps_seen.append(step),
                          should_stop=lambda: len(steps_seen) >= 3)
    resumed = run_supernet_task(_supernet_task(corpus_file, tmp_path / "a", steps=6))
    assert resumed.resumed_from_step == 3 and not resumed.cached
    straight = run_supernet_task(_supernet_task(corpus_file, tmp_path / "b", steps=6))
    assert straight.resumed_from_step == 0
    a, b = load_file(resumed.path), load_file(straight.path)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_inherited_evaluation_trains_nothing_and_matches_the_supernet(corpus_file: Path, tmp_path: Path) -> None:
    from search_spaces.base import random_archs
    from workers.evaluate import evaluate_candidate
    from workers.types import CandidateTask

    outcome = run_supernet_task(_supernet_task(corpus_file, tmp_path / "cache", steps=3))
    task, space = task_and_space("sparse-transformer", TINY_SPACE_OPTIONS,
                                 {"kind": "language-modeling", "train": str(corpus_file), "seq_len": 16,
                                  "batch_size": 8})
    (arch,) = random_archs(space, count=1, seed=5)
    result = evaluate_candidate(CandidateTask(
        job_id=1, trial_number=0, space="sparse-transformer", space_options=TINY_SPACE_OPTIONS, arch=arch.to_dict(),
        task={"kind": "language-modeling", "train": str(corpus_file), "seq_len": 16, "batch_size": 8},
        train_steps=0, seed=3, artifact_dir=str(tmp_path / "trial"), supernet_path=outcome.path))
    assert result.state == "complete", result.error
    assert result.steps_done == 0 and result.weights_path is None and result.extra["inherited"]
    assert not (tmp_path / "trial").exists()  # nothing saved for an inherited evaluation
    from workers.supernet_training import load_supernet

    model = space.inherit(load_supernet(space, outcome.path, seed=3), arch)
    assert result.metric == pytest.approx(task.evaluate_all(model)[task.metric_name], rel=1e-6)


@pytest.mark.ray
@pytest.mark.slow
def test_on_ray_the_supernet_trains_in_a_worker_and_reports_its_progress(corpus_file: Path, tmp_path: Path) -> None:
    import os

    from workers.executors.ray_executor import ensure_ray, import_ray
    from workers.supernet_runner import SupernetRunner

    ensure_ray(address=None, num_cpus=2)
    try:
        seen: list[int] = []
        outcome = SupernetRunner(use_ray=True, poll_s=0.05).run(
            _supernet_task(corpus_file, tmp_path / "cache", steps=30), progress=lambda step, total, loss: seen.append(step))
        assert Path(outcome.path).is_file() and not outcome.cached
        assert not outcome.worker.endswith(f":{os.getpid()}")  # another process: a Ray worker
        assert seen and seen[-1] == 30 and seen == sorted(seen)
        with pytest.raises(InterruptedError):  # a cancel stops the task; its checkpoint stays for a resume
            SupernetRunner(use_ray=True, poll_s=0.05).run(_supernet_task(corpus_file, tmp_path / "c2", steps=10_000),
                                                          should_stop=lambda: True)
    finally:
        import_ray().shutdown()


def test_the_learning_rate_warms_up_then_decays_to_zero_as_standalone_training_does(  # type: ignore[no-untyped-def]
        bound) -> None:
    from workers.supernet_training import SandwichTrainer

    task, space = bound
    supernet = SparseSupernet(space.options, seed=0)
    trainer = SandwichTrainer(supernet, space, task, seed=0, steps=100, largest_first=0.0)
    rates = [trainer.learning_rate_at(step) for step in range(100)]
    peak = task.spec.learning_rate  # the task's rate, as standalone training uses
    assert rates[0] == pytest.approx(peak / 10) and max(rates) == pytest.approx(peak, rel=0.03)
    assert rates.index(max(rates)) == 9 and rates[-1] < 0.001 * peak
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))  # decays from the end of the warm-up on
    trainer.train_step()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(rates[0])  # and the optimiser uses it


def test_an_moe_arch_trains_with_the_balancing_loss_of_standalone_training(  # type: ignore[no-untyped-def]
        bound) -> None:
    from search_spaces.sparse_transformer.modeling_hwnas_sparse import MixtureOfExperts

    task, space = bound
    supernet = SparseSupernet(space.options, seed=0)
    (batch,) = task.sample_batches(count=1, seed=1)
    largest = largest_arch(space)  # MoE in every layer
    supernet.train()
    supernet(batch["input_ids"], largest)
    model = space.inherit(supernet, largest).train()
    out = model(input_ids=batch["input_ids"], labels=batch["labels"])
    # the same balancing loss and weight as the extracted model computes while it trains
    assert supernet.aux_loss is not None and out.aux_loss is not None
    expected = model.config.moe_aux_loss_coef * float(out.aux_loss.detach())
    assert float(supernet.aux_loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert isinstance(model.blocks[0].ffn, MixtureOfExperts)
    supernet(batch["input_ids"], smallest_arch(space))  # no MoE block: no balancing loss
    assert supernet.aux_loss is None
    supernet.eval()
    with torch.no_grad():
        supernet(batch["input_ids"], largest)
    assert supernet.aux_loss is None  # evaluation adds nothing


def test_the_largest_arch_trains_alone_first_then_the_sandwich_trains_every_arch(  # type: ignore[no-untyped-def]
        bound) -> None:
    from workers.supernet_training import SandwichTrainer

    task, space = bound
    supernet = SparseSupernet(space.options, seed=0)
    trainer = SandwichTrainer(supernet, space, task, seed=0, steps=10, largest_first=0.3)
    dense_before = [layer.up.weight.detach().clone() for layer in supernet.layers]  # the largest arch is all MoE
    router_before = supernet.layers[0].router.weight.detach().clone()
    first = [trainer.train_step() for _ in range(3)]
    assert all(torch.equal(a, layer.up.weight) for a, layer in zip(dense_before, supernet.layers))
    assert not torch.equal(router_before, supernet.layers[0].router.weight)  # the largest arch did train
    assert all(step.loss_smallest != step.loss_smallest for step in first)  # NaN: no smaller arch ran
    rest = [trainer.train_step() for _ in range(7)]
    assert all(step.loss_smallest == step.loss_smallest for step in rest)
    assert any(not torch.equal(a, layer.up.weight) for a, layer in zip(dense_before, supernet.layers))
