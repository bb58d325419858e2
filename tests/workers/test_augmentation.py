"""Teacher-labelled augmentation: the neighbour table, the loss of perturbed rows, and training with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search_spaces.distillation import logit_distillation_loss
from tests.workers.test_classification import make
from workers.supernet_training import supernet_key
from workers.tasks.augmentation import NeighbourTable


def test_neighbours_are_the_nearest_used_pieces_by_cosine_and_never_the_piece_itself() -> None:
    embeddings = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [1.0, 0.05], [-1.0, 0.0]])
    table = NeighbourTable(embeddings, used_ids=[0, 1, 2, 3, 5], neighbours=1)  # 4 is not used by the data
    nearest = {i: int(table.neighbours[table.table[i], 0]) for i in (0, 1, 2, 3, 5)}
    assert nearest == {0: 1, 1: 0, 2: 3, 3: 2, 5: 2}  # 4 (nearest to 0) is never offered; 5 is opposite 0
    ids = torch.tensor([[0, 2, 4, 1], [0, 2, 4, 1]])
    out = table.replace(ids, rows=torch.tensor([True, False]), token_p=1.0, generator=torch.Generator())
    assert out[0].tolist() == [1, 3, 4, 0]  # every listed piece of a marked row replaced; 4 is not listed
    assert torch.equal(out[1], ids[1])  # an unmarked row is unchanged
    kept = table.replace(ids, rows=torch.tensor([True, True]), token_p=1e-9, generator=torch.Generator())
    assert torch.equal(kept, ids)


def test_a_perturbed_row_learns_from_the_teacher_alone() -> None:
    generator = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(4, 2, generator=generator), torch.randn(4, 2, generator=generator)
    labels = torch.tensor([0, 1, 1, 0])
    plain = logit_distillation_loss(logits, labels, teacher, alpha=0.5, temperature=2.0)
    every_row_gold = logit_distillation_loss(logits, labels, teacher, alpha=0.5, temperature=2.0,
                                             gold=torch.ones(4, dtype=torch.bool))
    assert float(every_row_gold) == pytest.approx(float(plain))
    gold = torch.tensor([True, True, False, False])
    flipped = labels.clone()
    flipped[2:] = 1 - flipped[2:]  # the perturbed rows' labels do not count ...
    assert float(logit_distillation_loss(logits, labels, teacher, alpha=0.5, temperature=2.0, gold=gold)) == \
        pytest.approx(float(logit_distillation_loss(logits, flipped, teacher, alpha=0.5, temperature=2.0, gold=gold)))
    # ... and where the student agrees with the teacher on them they cost nothing
    agreeing = logits.clone()
    agreeing[2:] = teacher[2:]
    none_perturbed = logit_distillation_loss(agreeing[:2], labels[:2], teacher[:2], alpha=0.5, temperature=2.0)
    half = logit_distillation_loss(agreeing, labels, teacher, alpha=0.5, temperature=2.0, gold=gold)
    assert float(half) == pytest.approx(float(none_perturbed) / 2, rel=1e-5)


def test_augmentation_changes_what_the_student_sees_and_is_reproducible(sentiment_files: tuple[Path, Path],
                                                                        tiny_bert_dir: Path) -> None:
    task, space = make(sentiment_files, tiny_bert_dir, augment_share=0.5, augment_token_p=0.5)
    plain_task, _ = make(sentiment_files, tiny_bert_dir)
    teacher = space.build(space.full_arch(), seed=0)
    arch = space.make_arch([{"source": 0, "heads": 2, "ffn": 32}])

    def trained(on: object, *, teacher_model: torch.nn.Module | None) -> dict[str, torch.Tensor]:
        student = space.build(arch, seed=0)
        on.train(student, steps=6, seed=1, teacher=teacher_model)  # type: ignore[attr-defined]
        return student.state_dict()

    first, again, plain = trained(task, teacher_model=teacher), trained(task, teacher_model=teacher), \
        trained(plain_task, teacher_model=teacher)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], plain[k]) for k in first)
    # without a teacher there is nothing to label a perturbed copy: the task trains as it would without augmenting
    alone, plain_alone = trained(task, teacher_model=None), trained(plain_task, teacher_model=None)
    assert all(torch.equal(alone[k], plain_alone[k]) for k in alone)


def test_augmentation_settings_stay_out_of_the_supernet_key(sentiment_files: tuple[Path, Path],
                                                           tiny_bert_dir: Path) -> None:
    """The supernet never augments, so a job that changes only the augmentation reuses it."""
    plain, space = make(sentiment_files, tiny_bert_dir)
    augmented, _ = make(sentiment_files, tiny_bert_dir, augment_share=0.5, augment_neighbours=3)
    other, _ = make(sentiment_files, tiny_bert_dir, distill_alpha=0.9)
    key = supernet_key(space, plain, steps=10, seed=0)
    assert supernet_key(space, augmented, steps=10, seed=0) == key
    assert supernet_key(space, other, steps=10, seed=0) != key


@pytest.mark.parametrize(("field", "value"), [("augment_share", 1.5), ("augment_token_p", 0.0),
                                              ("augment_neighbours", 0)])
def test_bad_augmentation_settings_name_the_field(sentiment_files: tuple[Path, Path], tiny_bert_dir: Path,
                                                  field: str, value: float) -> None:
    from workers.tasks.classification import ClassificationSpec

    with pytest.raises(ValueError, match=field):
        ClassificationSpec(kind="classification", train=str(sentiment_files[0]), validation=str(sentiment_files[1]),
                           **{field: value})
