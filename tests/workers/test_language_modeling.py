from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from search_spaces.arch import Arch
from search_spaces.base import SearchSpace
from search_spaces.errors import DataError
from tests.conftest import TINY_SPACE_OPTIONS
from workers.evaluate import task_and_space
from workers.tasks.base import Task, make_task
from workers.testing import TaskContract
from workers.tasks.language_modeling import BYTE_OFFSET


class UniformModel(torch.nn.Module):
    """Predicts every token with equal probability: exactly log2(V) bits per token."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.config = type("C", (), {"max_seq_len": 64})()

    def forward(self, input_ids: torch.Tensor, **_: object) -> object:
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        return type("O", (), {"logits": logits})()


@pytest.mark.parametrize("tokenizer", ["byte", "char"])
def test_bits_per_char_of_a_uniform_model(tmp_path: Path, tokenizer: str) -> None:
    text = ("héllo wörld, " * 400)  # non-ASCII: bytes per character > 1
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    task = make_task({"kind": "language-modeling", "train": str(path), "seq_len": 16, "tokenizer": tokenizer})
    bpc = task.evaluate(UniformModel(task.vocab_size))
    _, validation = task._texts
    ids, starts = task.encode(validation)
    windows = len(ids) // 16
    scored_tokens = windows * 15
    scored_chars = int(starts[: windows * 16].reshape(windows, 16)[:, 1:].sum())
    # Reference: every scored token costs log2(V) bits; divide by the characters those tokens start.
    assert bpc == pytest.approx(scored_tokens * math.log2(task.vocab_size) / scored_chars, rel=1e-6)
    if tokenizer == "byte":
        assert scored_tokens > scored_chars


def test_byte_ids_follow_the_exported_tokenizer(tmp_path: Path, corpus_file: Path) -> None:
    from transformers import AutoTokenizer

    task = make_task({"kind": "language-modeling", "train": str(corpus_file)})
    task.save_tokenizer(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    sample = "router é\n"
    ids, _ = task.encode(sample.encode())
    assert tokenizer(sample, add_special_tokens=False)["input_ids"] == ids.tolist()
    assert ids.min() >= BYTE_OFFSET and task.vocab_size == 259


def test_char_tokenizer_round_trips(tmp_path: Path, corpus_file: Path) -> None:
    from transformers import AutoTokenizer

    task = make_task({"kind": "language-modeling", "train": str(corpus_file), "tokenizer": "char"})
    task.save_tokenizer(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    sample = "alpha beta\ngamma"
    ids, _ = task.encode(sample.encode())
    assert tokenizer(sample)["input_ids"] == ids.tolist()
    assert tokenizer.decode(ids.tolist()) == sample


def test_training_lowers_the_metric_and_is_seeded(corpus_file: Path) -> None:
    from search_spaces.base import get_space
    from tests.conftest import TINY_SPACE_OPTIONS

    task = make_task({"kind": "language-modeling", "train": str(corpus_file), "seq_len": 16, "batch_size": 8})
    space = get_space("sparse-transformer", {**TINY_SPACE_OPTIONS, **task.space_options()})
    arch = space.make_arch(d_model=32, layers=[{"attn_heads": 2, "ffn": {"kind": "moe", "experts": 2, "top_k": 1,
                                                                           "width": 32}}])
    before = task.evaluate(space.build(arch, seed=0))
    results = []
    for _ in range(2):
        model = space.build(arch, seed=0)
        task.train(model, steps=60, seed=0)
        results.append(task.evaluate(model))
    assert results[0] == results[1]
    assert results[0] < before - 1.0


def test_too_little_text_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text("abc")
    task = make_task({"kind": "language-modeling", "train": str(path)})
    with pytest.raises(DataError, match="too little text"):
        task.describe_data()


def test_builtin_corpus_exists_on_any_python() -> None:
    task = make_task({"kind": "language-modeling", "train": "builtin:python-stdlib", "max_bytes": 200_000})
    info = task.describe_data()
    assert info["train_bytes"] + info["validation_bytes"] == 200_000


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2].parent / "shared/data/tinyshakespeare/input.txt")
                    .is_file(), reason="../shared/data/tinyshakespeare is missing")
def test_real_corpus_from_shared_data() -> None:
    path = Path(__file__).resolve().parents[2].parent / "shared/data/tinyshakespeare/input.txt"
    task = make_task({"kind": "language-modeling", "train": str(path), "tokenizer": "char"})
    assert 60 <= task.vocab_size <= 70 and task.describe_data()["validation_bytes"] > 50_000


class TestLanguageModelingContract(TaskContract):
    @pytest.fixture()
    def bound(self, corpus_file: Path) -> tuple[Task, SearchSpace]:
        return task_and_space("sparse-transformer", TINY_SPACE_OPTIONS,
                              {"kind": "language-modeling", "train": str(corpus_file), "seq_len": 16, "batch_size": 4})

    @pytest.fixture()
    def arch(self, bound: tuple[Task, SearchSpace]) -> Arch:
        return bound[1].make_arch(d_model=16, layers=[{"attn_heads": 2, "ffn": {"kind": "moe", "experts": 2,
                                                                                 "top_k": 1, "width": 16}}])
