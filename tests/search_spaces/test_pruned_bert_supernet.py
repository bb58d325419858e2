"""The width- and depth-adaptive BERT (DynaBERT-style supernet) of the `pruned-bert` space, on a tiny BERT:
reordering keeps the teacher's function, an arch on the supernet equals its inherited model and `build`'s,
and sandwich training by distillation moves the sub-networks towards the teacher."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from search_spaces.base import SupernetSpace, get_space
from tests.conftest import tiny_pruned_bert_options
from tests.search_spaces.test_pruned_bert import padded_pair_inputs


def _archs(space, count: int = 12):  # type: ignore[no-untyped-def]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    archs = [space.sample(study.ask()) for _ in range(count)]
    archs.append(space.make_arch([{"source": 0, "heads": 0, "ffn": 0}, {"source": 1, "heads": 1, "ffn": 16}]))
    archs.append(space.make_arch([{"source": 1, "heads": 3, "ffn": 0}]))  # a dropped bottom layer
    return archs


@pytest.mark.parametrize("kind", ["magnitude", "random"])
def test_an_arch_on_the_supernet_equals_its_inherited_model_and_builds_model(tiny_bert_dir: Path,
                                                                            kind: str) -> None:
    space = get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir, importance=kind))
    assert isinstance(space, SupernetSpace)
    supernet = space.build_supernet(seed=0).eval()
    inputs = padded_pair_inputs()
    with torch.no_grad():  # reordering heads and units keeps the teacher's function
        torch.testing.assert_close(supernet(inputs, space.full_arch()),
                                   space.build(space.full_arch(), seed=0)(**inputs).logits, rtol=0, atol=1e-5)
    for arch in _archs(space):
        inherited = space.inherit(supernet, arch)
        with torch.no_grad():
            on_supernet = supernet(inputs, arch)
            torch.testing.assert_close(inherited(**inputs).logits, on_supernet, rtol=0, atol=1e-5)
            # the leading slices are the most important heads and units: what `build` keeps
            torch.testing.assert_close(space.build(arch, seed=0)(**inputs).logits, on_supernet, rtol=0, atol=1e-5)
        # physically small: no masks, only the kept layers, heads and units
        assert len(inherited.bert.encoder.layer) == len(arch.config["layers"])
        assert sum(p.numel() for p in inherited.parameters()) < sum(p.numel() for p in supernet.parameters()) \
            or len(arch.config["layers"]) == space.base.layers


def test_sandwich_training_distils_the_sub_networks_towards_the_teacher(tiny_bert_dir: Path,
                                                                        sentiment_files: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    from workers.evaluate import task_and_space
    from workers.supernet_training import SandwichTrainer

    task_spec = {"kind": "classification", "train": str(sentiment_files[0]), "validation": str(sentiment_files[1]),
                 "text_column": "sentence", "label_column": "label", "max_seq_len": 16, "batch_size": 16,
                 "learning_rate": 3e-3}
    # a teacher that knows the task: fine-tuned as a job's preparation would
    task, space = task_and_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir), task_spec)
    teacher = space.build(space.full_arch(), seed=0)
    task.train(teacher, steps=60, seed=0)
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    from safetensors.torch import save_file

    from search_spaces.pruned_bert.space import TEACHER_FILE

    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(teacher_dir / TEACHER_FILE))
    task, space = task_and_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir, teacher_dir=str(teacher_dir)),
                                 task_spec)
    supernet = space.build_supernet(seed=0)
    _, smallest = space.sandwich_archs()
    (held_out,) = task.sample_batches(count=1, seed=999)

    def gap() -> float:  # how far the smallest arch's predictions are from the teacher's
        with torch.no_grad():
            supernet.eval()
            student = supernet(held_out, smallest).log_softmax(-1)
            target = teacher(**{k: v for k, v in held_out.items() if k != "labels"}).logits.log_softmax(-1)
        return float(torch.nn.functional.kl_div(student, target, reduction="batchmean", log_target=True))

    before = gap()
    teacher_before = {k: v.clone() for k, v in supernet.teacher.state_dict().items()}
    trainer = SandwichTrainer(supernet, space, task, seed=0, steps=30)
    assert trainer.largest_first_steps == 0  # the largest arch is the teacher: the sandwich from the start
    history = [trainer.train_step() for _ in range(30)]
    assert all(step.loss_smallest == step.loss_smallest for step in history)
    assert gap() < 0.5 * before, (before, gap())
    # the teacher itself is not trained, and is not part of the supernet's saved weights
    assert not any(name.startswith("teacher") for name in supernet.state_dict())
    assert all(torch.equal(v, supernet.teacher.state_dict()[k]) for k, v in teacher_before.items())


def test_the_teachers_outputs_are_those_of_the_batch_at_hand(tiny_bert_dir: Path) -> None:
    from search_spaces.pruned_bert.supernet import PrunedBertSupernet

    space = get_space("pruned-bert", tiny_pruned_bert_options(tiny_bert_dir))
    teacher = space.build(space.full_arch(), seed=0)
    supernet = PrunedBertSupernet(space.build(space.full_arch(), seed=0), teacher=teacher,
                                  head_size=space.base.head_size)
    for seed in range(5):  # each batch freed before the next: a cache keyed by address could serve a stale one
        generator = torch.Generator().manual_seed(seed)
        batch = {"input_ids": torch.randint(5, 25, (3, 12), generator=generator)}
        logits, _ = supernet._teacher_outputs(batch)
        with torch.no_grad():
            torch.testing.assert_close(logits, teacher(**batch).logits.float())
        del batch, logits


def test_a_kept_layer_learns_the_teachers_same_layer(working_bert_dir: Path) -> None:
    """The depth mapping: with layer 0 dropped, the kept layer 1 is compared with the teacher's layer 1 (not with
    the teacher's first layer nor its embeddings), in the task-specific and the task-agnostic objective."""
    from types import SimpleNamespace

    from search_spaces.distillation import hidden_state_mse, logit_distillation_loss
    from search_spaces.pruned_bert.agnostic import AgnosticObjective
    from search_spaces.pruned_bert.supernet import PrunedBertSupernet

    space = get_space("pruned-bert", tiny_pruned_bert_options(working_bert_dir))
    teacher = space.build(space.full_arch(), seed=0).eval()
    supernet = PrunedBertSupernet(space.build(space.full_arch(), seed=1), teacher=teacher,
                                  head_size=space.base.head_size).eval()
    with torch.no_grad():  # a student unlike the teacher, so that the mapped layer matters
        for parameter in supernet.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    inputs = padded_pair_inputs()
    mask = inputs["attention_mask"]
    batch = {**inputs, "labels": torch.tensor([0, 1, 1])}
    arch = space.make_arch([{"source": 1, "heads": 0, "ffn": 32}])
    with torch.no_grad():
        loss = supernet.sandwich_loss(batch, arch, spec=SimpleNamespace(distill_alpha=0.5, distill_temperature=2.0))
        logits, states = supernet(inputs, arch, hidden=True)
        taught = teacher(**inputs, output_hidden_states=True)  # hidden_states[0]: the embeddings
    assert set(states) == {1}
    kd = logit_distillation_loss(logits, batch["labels"], taught.logits, alpha=0.5, temperature=2.0)
    same_layer = hidden_state_mse([(states[1], taught.hidden_states[2])], attention_mask=mask)
    torch.testing.assert_close(loss, kd + same_layer)
    for other in (taught.hidden_states[0], taught.hidden_states[1]):
        assert abs(float(hidden_state_mse([(states[1], other)], attention_mask=mask)) - float(same_layer)) > 1e-3
    with torch.no_grad():  # task-agnostic: the same mapping (no heads kept: no attention relations)
        agnostic = AgnosticObjective(supernet, teacher).loss(inputs, arch)
    torch.testing.assert_close(agnostic, same_layer)
