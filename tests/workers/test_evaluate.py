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
