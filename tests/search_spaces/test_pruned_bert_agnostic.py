"""The task-agnostic adaptive BERT (AutoDistil) of the `pruned-bert` space, on a tiny BERT: its sub-networks
equal their inherited models, distillation on unlabelled text moves them towards the base, it is trained once
per base (cached, resumable), and a job's supernet on top of it trains the task head alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search_spaces.base import get_space
from search_spaces.testing import SupernetContract
from tests.conftest import TINY_WORDS, tiny_pruned_bert_options


@pytest.fixture()
def corpus_file(tmp_path: Path) -> Path:
    """Unlabelled text in the tiny BERT's vocabulary (no task, no labels)."""
    import random

    rng = random.Random(0)
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(rng.choice(TINY_WORDS) for _ in range(rng.randint(5, 20)))
                              for _ in range(400)))
    return path


def agnostic_space(folder: Path, corpus: Path, **changes: object):  # type: ignore[no-untyped-def]
    options = {"supernet": "task-agnostic", "agnostic_corpus": str(corpus), "agnostic_steps": 30,
               "agnostic_seq_len": 16, **changes}
    return get_space("pruned-bert", tiny_pruned_bert_options(folder, **options))


class TestTaskAgnosticSupernetContract(SupernetContract):
    @pytest.fixture()
    def space(self, tiny_bert_dir: Path, corpus_file: Path):  # type: ignore[no-untyped-def]
        return agnostic_space(tiny_bert_dir, corpus_file)


def _recipe(space, corpus: Path, steps: int = 30):  # type: ignore[no-untyped-def]
    from search_spaces.pruned_bert.agnostic import AgnosticRecipe

    return AgnosticRecipe(corpus=str(corpus), steps=steps, seed=0, seq_len=16, batch_size=8, learning_rate=3e-3)


def test_distillation_on_text_moves_the_sub_networks_towards_the_base(working_bert_dir: Path, corpus_file: Path,
                                                                      tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from search_spaces.pruned_bert.agnostic import (AgnosticObjective, build_agnostic_start, corpus_windows,
                                                    train_agnostic_supernet)

    space = agnostic_space(working_bert_dir, corpus_file)
    recipe = _recipe(space, corpus_file, steps=120)
    windows = corpus_windows(space, recipe)
    assert windows.shape[1] == 16 and windows.shape[0] > 50
    held_out = {"input_ids": windows[-8:], "attention_mask": torch.ones_like(windows[-8:])}
    _, smallest = space.sandwich_archs()
    middle = space.make_arch([{"source": 0, "heads": 2, "ffn": 32}, {"source": 1, "heads": 1, "ffn": 16}])

    def losses(supernet) -> list[float]:  # type: ignore[no-untyped-def]
        objective = AgnosticObjective(supernet.eval(), base)
        with torch.no_grad():
            return [float(objective.loss(held_out, arch)) for arch in (smallest, middle)]

    start, base = build_agnostic_start(space, seed=0)
    before = losses(start)
    with torch.no_grad():  # the full network starts as the base itself: nothing to learn
        assert float(AgnosticObjective(start, base).loss(held_out, space.full_arch())) < 1e-4
    path = train_agnostic_supernet(space, recipe, cache_dir=tmp_path / "cache")
    trained, _ = build_agnostic_start(space, seed=0)
    trained.model.load_state_dict({**trained.model.state_dict(), **load_file(str(path))})
    after = losses(trained)
    assert all(a < 0.8 * b for a, b in zip(after, before)), (before, after)


def test_trained_once_per_base_and_resumed_from_its_checkpoint(tiny_bert_dir: Path, corpus_file: Path,
                                                               tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from search_spaces.pruned_bert.agnostic import train_agnostic_supernet

    space = agnostic_space(tiny_bert_dir, corpus_file)
    recipe = _recipe(space, corpus_file, steps=12)
    whole = load_file(str(train_agnostic_supernet(space, recipe, cache_dir=tmp_path / "a")))

    class Killed(Exception):
        pass

    def kill_at_7(step: int, steps: int, loss: float) -> None:
        if step == 7:
            raise Killed

    with pytest.raises(Killed):
        train_agnostic_supernet(space, recipe, cache_dir=tmp_path / "b", checkpoint_every_s=0.0,
                                progress=kill_at_7)
    seen: list[int] = []
    path = train_agnostic_supernet(space, recipe, cache_dir=tmp_path / "b",
                                   progress=lambda step, steps, loss: seen.append(step))
    assert seen[0] == 7 and seen[-1] == 12  # resumed after the last checkpoint (step 6), not from zero
    resumed = load_file(str(path))
    assert all(torch.allclose(resumed[k], whole[k], atol=1e-6) for k in whole)
    mtime = path.stat().st_mtime_ns
    calls: list[int] = []
    again = train_agnostic_supernet(space, recipe, cache_dir=tmp_path / "b", progress=lambda *a: calls.append(1))
    assert again == path and again.stat().st_mtime_ns == mtime and not calls  # cached: no training
    other = agnostic_space(tiny_bert_dir, corpus_file, num_labels=3)  # another task's space: the same supernet
    assert train_agnostic_supernet(other, recipe, cache_dir=tmp_path / "b") == path


def test_a_jobs_supernet_on_it_trains_the_head_alone(tiny_bert_dir: Path, corpus_file: Path,
                                                     tmp_path: Path) -> None:
    from search_spaces.pruned_bert.agnostic import train_agnostic_supernet

    space = agnostic_space(tiny_bert_dir, corpus_file)
    path = train_agnostic_supernet(space, _recipe(space, corpus_file, steps=5), cache_dir=tmp_path)
    prepared = agnostic_space(tiny_bert_dir, corpus_file, agnostic_supernet=str(path))
    supernet = prepared.build_supernet(seed=0)
    trainable = {name for name, p in supernet.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("model.classifier.", "model.bert.pooler.")) for name in trainable)
    from safetensors.torch import load_file

    encoder = load_file(str(path))
    state = supernet.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in encoder.items())  # the task-agnostic encoder, as trained
    unprepared = space.build_supernet(seed=0).model.state_dict()
    assert not all(torch.equal(unprepared[k], v) for k, v in encoder.items())


def test_a_corpus_is_a_file_or_builtin(tiny_bert_dir: Path) -> None:
    from search_spaces.errors import SpecError

    with pytest.raises((ValueError, SpecError), match="agnostic_corpus"):
        get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir, agnostic_corpus="dataset:abc"))
