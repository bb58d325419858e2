"""The options of the `pruned-bert` space: its bounds, the teacher's budget, the one-shot supernet's kind, and
the paths a job's preparation sets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from search_spaces.base import SpaceOptions
from search_spaces.data_paths import DataPath


class PrunedBertOptions(SpaceOptions):
    """Bounds of the space. `num_labels` and `labels` normally come from the task's data;
    `teacher_dir` and `importance_file` are set by the job's preparation."""

    base_model: str = Field(default="minilm-l6", min_length=1,
                            description="'minilm-l6' or a local Hugging Face BERT folder")
    num_labels: int = Field(default=2, ge=2, le=100_000)
    labels: tuple[str, ...] | None = None
    importance: Literal["taylor", "magnitude", "random"] = "taylor"
    importance_batches: int = Field(default=16, ge=1, le=10_000)
    min_layers: int = Field(default=1, ge=1, le=128)
    head_step: int = Field(default=1, ge=1, le=64)
    ffn_step: int = Field(default=32, ge=1, le=4096)
    teacher_steps: int = Field(default=1000, ge=0, le=10_000_000,
                               description="fine-tuning steps of the teacher (0: the base with an untrained head)")
    teacher_learning_rate: float = Field(default=5e-5, gt=0.0, le=1.0)
    teacher_dir: str | None = None
    importance_file: str | None = None
    supernet: Literal["task-specific", "task-agnostic"] = Field(
        default="task-specific", description="one-shot jobs: the adaptive BERT distilled from the job's teacher "
        "(DynaBERT), or one distilled from the base on unlabelled text once per base model and shared by every "
        "task (AutoDistil), on which the job only fits its head")
    agnostic_corpus: str = Field(default="builtin:python-stdlib", min_length=1,
                                 description="task-agnostic supernet: unlabelled text (a UTF-8 file or a built-in "
                                 "corpus)")
    agnostic_steps: int = Field(default=1000, ge=1, le=10_000_000,
                                description="task-agnostic supernet: distillation steps (once per base model)")
    agnostic_seq_len: int = Field(default=128, ge=8, le=4096,
                                  description="task-agnostic supernet: tokens per training window")
    agnostic_supernet: str | None = None

    @classmethod
    def data_paths(cls, raw: Mapping[str, Any]) -> list[DataPath]:
        from search_spaces.pruned_bert.base_model import BUILTIN_BASES

        paths = []
        base = raw.get("base_model")
        if isinstance(base, str) and base not in BUILTIN_BASES:
            paths.append(DataPath("space_options.base_model", base, "folder"))
        corpus = raw.get("agnostic_corpus")
        if isinstance(corpus, str) and not corpus.startswith("builtin:"):
            paths.append(DataPath("space_options.agnostic_corpus", corpus, "file"))
        for name in ("teacher_dir", "importance_file", "agnostic_supernet"):
            if raw.get(name) is not None:
                paths.append(DataPath(f"space_options.{name}", str(raw[name]), "internal"))
        return paths

    @model_validator(mode="after")
    def _corpus_is_readable(self) -> PrunedBertOptions:
        if self.agnostic_corpus.startswith("dataset:"):
            raise ValueError(f"agnostic_corpus {self.agnostic_corpus!r}: uploaded datasets are not taken here; give "
                             "a text file on the server or builtin:python-stdlib")
        return self

    def check_search_mode(self, mode: str) -> None:
        if self.supernet == "task-agnostic" and mode != "one-shot":
            raise ValueError(f"space_options.supernet: task-agnostic is the supernet of a one-shot search, and "
                             f"search.mode is {mode}; use search.mode: one-shot, or leave space_options.supernet out")

    @model_validator(mode="after")
    def _labels_match(self) -> PrunedBertOptions:
        if self.labels is not None and len(self.labels) != self.num_labels:
            raise ValueError(f"labels has {len(self.labels)} names but num_labels is {self.num_labels}")
        return self
