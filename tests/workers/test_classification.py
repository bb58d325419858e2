"""The classification task: labels, metrics computed a second way, training and distillation on a tiny BERT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas.spec import parse_spec
from search_spaces.arch import Arch
from search_spaces.base import SearchSpace
from search_spaces.errors import DataError, SpecError
from tests.conftest import tiny_pruned_bert_options, write_sentiment_tsv
from workers.evaluate import task_and_space
from workers.tasks.base import Task
from workers.testing import TaskContract


def make(files: tuple[Path, Path], tiny_bert_dir: Path, **changes: object):  # type: ignore[no-untyped-def]
    task = {"kind": "classification", "train": str(files[0]), "validation": str(files[1]), "max_seq_len": 16,
            "batch_size": 16, "learning_rate": 3e-3, **changes}
    return task_and_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir), task)


class ConstantModel(torch.nn.Module):
    """Predicts `label` for every input."""

    def __init__(self, label: int, classes: int = 2) -> None:
        super().__init__()
        self.label, self.classes = label, classes

    def forward(self, input_ids: torch.Tensor, **_: object):  # type: ignore[no-untyped-def]
        logits = torch.zeros(input_ids.shape[0], self.classes)
        logits[:, self.label] = 1.0
        return type("Out", (), {"logits": logits})()


def test_metrics_against_counts(sentiment_files: tuple[Path, Path], tiny_bert_dir: Path) -> None:
    task, _ = make(sentiment_files, tiny_bert_dir)
    gold = [line.rsplit("\t", 1)[1] for line in sentiment_files[1].read_text().splitlines()[1:]]
    positives = gold.count("1") / len(gold)
    all_one = task.evaluate_all(ConstantModel(1))
    assert all_one["accuracy"] == pytest.approx(positives)
    assert all_one["f1"] == pytest.approx(2 * positives / (1 + positives))  # precision p, recall 1
    all_zero = task.evaluate_all(ConstantModel(0))
    assert all_zero == {"accuracy": pytest.approx(1 - positives), "f1": 0.0, "mcc": 0.0}
    # Matthews correlation: one class for everything scores 0 whatever its F1 (MRPC's majority class: F1 0.81)
    assert all_one["f1"] > 0.5 and all_one["mcc"] == 0.0


@pytest.mark.slow
def test_mcc_ranks_a_classifier_above_a_constant_one(sentiment_files: tuple[Path, Path],
                                                     tiny_bert_dir: Path) -> None:
    task, space = make(sentiment_files, tiny_bert_dir, metric="mcc")
    assert task.metric_name == "mcc" and task.direction == "maximize" and task.worst_metric() == -1.0
    model = space.build(space.full_arch(), seed=0)
    task.train(model, steps=60, seed=0)
    trained = task.evaluate_all(model)
    assert task.evaluate(model) == trained["mcc"] > 0.5  # the sentiment files are learnable
    assert task.evaluate(ConstantModel(1)) == 0.0


def test_labels_space_options_and_names(tmp_path: Path, tiny_bert_dir: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(f'{{"sentence": "good movie", "label": "{v}"}}' for v in ("10", "2", "pos")) + "\n")
    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"sentence": "bad", "label": "2"}\n')
    task, space = make((train, dev), tiny_bert_dir, metric="accuracy")
    assert task.labels == ["2", "10", "pos"]
    assert space.options.num_labels == 3 and space.options.labels == ("2", "10", "pos")
    named, _ = make((train, dev), tiny_bert_dir, label_names=["two", "ten", "positive"])
    assert named.space_options()["labels"] == ("two", "ten", "positive")
    with pytest.raises(DataError, match="f1 is for binary tasks"):
        make((train, dev), tiny_bert_dir, metric="f1")


def test_validation_label_unseen_in_training(tmp_path: Path, tiny_bert_dir: Path) -> None:
    train = write_sentiment_tsv(tmp_path / "train.tsv", rows=20, seed=0)
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\ngood film\t1\nbad film\t7\n")
    with pytest.raises(DataError, match=r"dev.tsv:3: label '7' never occurs in the training data"):
        make((train, dev), tiny_bert_dir)


def test_spec_errors_name_the_field(sentiment_files: tuple[Path, Path], tmp_path: Path) -> None:
    base = {"space": "pruned-bert", "latency_target_ms": 5.0, "device": "cpu-1t", "budget": {"trials": 2}}
    with pytest.raises(SpecError, match=r"task.train: no such file"):
        parse_spec({**base, "task": {"kind": "classification", "train": str(tmp_path / "no.tsv"),
                                     "validation": str(sentiment_files[1])}})
    with pytest.raises(SpecError, match=r"both needed"):
        parse_spec({**base, "task": {"kind": "classification", "train": str(sentiment_files[0])}})
    with pytest.raises(SpecError, match=r"not both"):
        parse_spec({**base, "task": {"kind": "classification", "dataset": "glue", "train": str(sentiment_files[0]),
                                     "validation": str(sentiment_files[1])}})
    with pytest.raises(SpecError, match=r"takes tasks of kind \['classification'\]"):
        parse_spec({**base, "task": {"kind": "language-modeling", "train": "builtin:python-stdlib"}})


@pytest.mark.slow
def test_training_learns_and_distillation_follows_the_teacher(sentiment_files: tuple[Path, Path],
                                                              tiny_bert_dir: Path) -> None:
    task, space = make(sentiment_files, tiny_bert_dir)
    teacher = space.build(space.full_arch(), seed=0)
    before = task.evaluate(teacher)
    task.train(teacher, steps=60, seed=0)
    trained = task.evaluate(teacher)
    assert trained > max(before, 0.8), (before, trained)
    # A student distilled with alpha=1 learns only from the teacher: it agrees with the teacher's predictions.
    distil_task, _ = make(sentiment_files, tiny_bert_dir, distill_alpha=1.0)
    student = space.build(space.make_arch([{"source": 0, "heads": 2, "ffn": 32}]), seed=0)
    distil_task.train(student, steps=60, seed=0, teacher=teacher)
    agreement = sum(a == b for a, b in zip(distil_task.predict(student), task.predict(teacher))) / 80
    assert agreement > 0.85


def test_hidden_state_distillation_pulls_each_kept_layer_towards_the_teachers_same_layer(
        sentiment_files: tuple[Path, Path], tiny_bert_dir: Path) -> None:
    from workers.tasks.classification import hidden_state_loss

    task, space = make(sentiment_files, tiny_bert_dir)
    teacher = space.build(space.full_arch(), seed=0)
    task.train(teacher, steps=40, seed=0)
    arch = space.make_arch([{"source": 1, "heads": 2, "ffn": 32}])  # layer 0 dropped: kept layer 0 is source 1
    (batch,) = task.sample_batches(count=1, seed=5)
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def gap(weight: float) -> float:
        tuned, _ = make(sentiment_files, tiny_bert_dir, distill_hidden_weight=weight)
        student = space.build(arch, seed=0)
        tuned.train(student, steps=30, seed=0, teacher=teacher)
        with torch.no_grad():
            mine = student(**inputs, output_hidden_states=True).hidden_states
            theirs = teacher(**inputs, output_hidden_states=True).hidden_states
        return float(hidden_state_loss(mine, theirs, sources=[1], attention_mask=inputs["attention_mask"]))

    assert gap(1.0) < 0.5 * gap(0.0)


@pytest.mark.parametrize("augment_share", [0.0, 0.5])
def test_training_continued_in_rungs_equals_training_in_one_go(sentiment_files: tuple[Path, Path],
                                                               tiny_bert_dir: Path, augment_share: float) -> None:
    """`TrainingRun` carries the schedule, the optimiser, the data order and dropout's generator from rung to
    rung (with a teacher too, and its augmentation): 4 + 8 steps give the weights of 12 steps at once."""
    import copy

    import torch

    from workers.tasks.base import TrainingRun

    task, space = make(sentiment_files, tiny_bert_dir, distill_alpha=0.5, augment_share=augment_share)
    teacher = space.build(space.full_arch(), seed=0)
    arch = space.make_arch([{"source": 0, "heads": 2, "ffn": 32}])
    whole = space.build(arch, seed=0)
    task.train(whole, steps=12, seed=3, teacher=teacher)
    rungs = space.build(arch, seed=0)
    run = TrainingRun(total_steps=12)
    task.train(rungs, steps=4, seed=3, teacher=teacher, run=run)
    resumed = copy.deepcopy(rungs)  # as a new process would: the weights and the run's saved state only
    run = TrainingRun(total_steps=12, start_step=run.start_step, state=copy.deepcopy(run.state))
    task.train(resumed, steps=8, seed=3, teacher=teacher, run=run)
    assert run.start_step == 12
    expected, got = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(expected[name], got[name]) for name in expected)


class TestClassificationContract(TaskContract):
    @pytest.fixture()
    def bound(self, sentiment_files: tuple[Path, Path], tiny_bert_dir: Path) -> tuple[Task, SearchSpace]:
        return make(sentiment_files, tiny_bert_dir)

    @pytest.fixture()
    def arch(self, bound: tuple[Task, SearchSpace]) -> Arch:
        return bound[1].make_arch([{"source": 0, "heads": 2, "ffn": 32}])
