from __future__ import annotations

from pathlib import Path

from search_spaces.base import get_space
from tests.conftest import TINY_SPACE_OPTIONS
from workers.evaluate import evaluate_candidate
from workers.types import CandidateTask


def candidate(tmp_path: Path, corpus: Path, arch: dict, **changes: object) -> CandidateTask:  # type: ignore[type-arg]
    fields = dict(job_id=1, trial_number=0, space="sparse-transformer", space_options=TINY_SPACE_OPTIONS,
                  arch=arch, task={"kind": "language-modeling", "train": str(corpus), "seq_len": 16},
                  train_steps=3, seed=0, artifact_dir=str(tmp_path / "t0"))
    fields.update(changes)
    return CandidateTask(**fields)  # type: ignore[arg-type]


def test_evaluation_trains_scores_and_saves_weights(tmp_path: Path, corpus_file: Path) -> None:
    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    arch = space.make_arch(d_model=16, layers=[{"attn_heads": 2, "ffn": {"kind": "dense", "width": 32}}])
    result = evaluate_candidate(candidate(tmp_path, corpus_file, arch.to_dict()))
    assert result.state == "complete" and result.error is None
    assert result.metric is not None and 0 < result.metric < 20
    assert Path(result.weights_path or "").is_file()
    again = evaluate_candidate(candidate(tmp_path, corpus_file, arch.to_dict()))
    assert again.metric == result.metric  # pure and seeded


def test_a_bad_candidate_is_a_failed_result_with_its_error(tmp_path: Path, corpus_file: Path) -> None:
    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    arch = space.make_arch(d_model=16, layers=[{"attn_heads": 2, "ffn": {"kind": "none"}}]).to_dict()
    arch["config"]["d_model"] = 999
    result = evaluate_candidate(candidate(tmp_path, corpus_file, arch))
    assert result.state == "failed"
    assert "d_model must be one of" in (result.error or "")


def test_a_trial_trained_in_rungs_equals_one_trained_in_one_go(tmp_path: Path, corpus_file: Path) -> None:
    """A promoted trial continues its run (learning-rate schedule, optimiser state, data order) from the
    files its last rung saved, so rungs ending at 4, 12 and 24 steps give the weights of 24 steps at once."""
    from safetensors.torch import load_file

    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    arch = space.make_arch(d_model=16, layers=[{"attn_heads": 2, "ffn": {"kind": "moe", "experts": 2, "top_k": 1,
                                                                          "width": 32}}]).to_dict()
    whole = evaluate_candidate(candidate(tmp_path, corpus_file, arch, train_steps=24,
                                         artifact_dir=str(tmp_path / "whole")))
    previous, steps_before = None, 0
    for steps in (4, 12, 24):
        result = evaluate_candidate(candidate(tmp_path, corpus_file, arch, train_steps=steps, schedule_steps=24,
                                              steps_before=steps_before, resume_from=previous,
                                              artifact_dir=str(tmp_path / "rungs")))
        assert result.state == "complete" and result.steps_done == steps, result.error
        previous, steps_before = result.weights_path, steps
    assert sorted(p.name for p in (tmp_path / "rungs").iterdir()) == [
        "training_state-step12.pt", "training_state-step4.pt", "weights-step12.safetensors",
        "weights-step4.safetensors", "weights.safetensors"]
    final, reference = load_file(previous), load_file(whole.weights_path or "")
    assert all(torch_equal(final[name], reference[name]) for name in reference)
    assert result.metric == whole.metric

    # Without the saved state (an older version's files) the trial still continues, with a fresh optimiser.
    (tmp_path / "rungs" / "training_state-step12.pt").unlink()
    rung = tmp_path / "rungs" / "weights-step12.safetensors"
    fresh = evaluate_candidate(candidate(tmp_path, corpus_file, arch, train_steps=24, schedule_steps=24,
                                         steps_before=12, resume_from=str(rung), artifact_dir=str(tmp_path / "rungs")))
    assert fresh.state == "complete" and fresh.metric != whole.metric


def test_final_training_that_over_trains_keeps_its_best_weights(tmp_path: Path) -> None:
    """With `keep_best_every_steps` the model is scored before training and every that many steps, and the
    best-scoring weights are kept: here a model that learns its training text's strict alternation ("abab")
    first gets better, then worse, on a random mix of the same letters. The kept weights are those of that
    step of the same run (one schedule of 40 steps), and its metric theirs."""
    import random

    from safetensors.torch import load_file

    (tmp_path / "train.txt").write_text("ab" * 4000)
    rng = random.Random(0)
    (tmp_path / "validation.txt").write_text("".join(rng.choice("ab") for _ in range(2000)))
    task = {"kind": "language-modeling", "train": str(tmp_path / "train.txt"), "seq_len": 16,
            "validation": str(tmp_path / "validation.txt"), "learning_rate": 0.05}
    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    arch = space.make_arch(d_model=16, layers=[{"attn_heads": 2, "ffn": {"kind": "dense", "width": 32}}]).to_dict()
    along = {steps: evaluate_candidate(candidate(tmp_path, tmp_path, arch, task=task, train_steps=steps,
                                                 schedule_steps=40, artifact_dir=str(tmp_path / f"s{steps}")))
             for steps in range(0, 41, 8)}
    best_step = min(along, key=lambda steps: (along[steps].metric, steps))
    assert 0 < best_step < 40  # it over-trains: neither the start nor the end is best
    kept = evaluate_candidate(candidate(tmp_path, tmp_path, arch, task=task, train_steps=40, keep_best_every_steps=8,
                                        artifact_dir=str(tmp_path / "kept")))
    assert kept.state == "complete", kept.error
    assert kept.extra["kept_step"] == best_step and kept.steps_done == 40
    assert kept.metric == along[best_step].metric < along[40].metric
    weights, reference = load_file(kept.weights_path or ""), load_file(along[best_step].weights_path or "")
    assert all(torch_equal(weights[name], reference[name]) for name in reference)
    # where the last step is best, the weights are those of training in one go
    last = evaluate_candidate(candidate(tmp_path, tmp_path, arch, task=task, train_steps=8, keep_best_every_steps=3,
                                        artifact_dir=str(tmp_path / "last")))
    whole = evaluate_candidate(candidate(tmp_path, tmp_path, arch, task=task, train_steps=8,
                                         artifact_dir=str(tmp_path / "whole")))
    assert last.extra["kept_step"] == 8 and last.metric == whole.metric
    assert "kept_step" not in whole.extra


def torch_equal(a: object, b: object) -> bool:
    import torch

    return bool(torch.equal(a, b))  # type: ignore[arg-type]
