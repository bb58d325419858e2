"""Sandwich-rule training of the sparse-transformer supernet: the largest and the smallest arch both learn
from the shared weights, and the same seed gives the same supernet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search_spaces.sparse_transformer.supernet import SparseSupernet
from tests.conftest import TINY_SPACE_OPTIONS
from workers.evaluate import task_and_space
from workers.supernet_training import largest_arch, lm_loss, smallest_arch, train_supernet


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
