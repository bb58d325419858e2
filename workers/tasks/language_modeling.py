"""The `language-modeling` task: byte- or character-level LM on a text corpus, scored in bits per character."""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from search_spaces.errors import DataError
from workers.tasks.base import Task, TaskSpec, TrainingRun, begin_run, end_run, optimizer_step, register_task
from search_spaces.corpus import check_source, fingerprint, read_corpus

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor, nn

BYTE_OFFSET = 3  # ByT5's id layout: 0 pad, 1 eos, 2 unk, then byte b at id b + 3


class LanguageModelingSpec(TaskSpec):
    data_fields: ClassVar[dict[str, Literal["file", "folder"]]] = {"train": "file", "validation": "file"}
    dataset_formats: ClassVar[tuple[str, ...]] = ("text",)

    kind: Literal["language-modeling"] = "language-modeling"
    train: str = Field(min_length=1, description="a text corpus: dataset:NAME (an uploaded dataset), "
                                                "builtin:python-stdlib, or a file path")
    validation: str | None = Field(default=None, description="separate validation corpus (dataset:NAME or a "
                                                             "path); else a tail split of train")
    validation_fraction: float = Field(default=0.05, gt=0.0, lt=0.5)
    tokenizer: Literal["byte", "char"] = "byte"
    seq_len: int = Field(default=64, ge=8, le=4096)
    batch_size: int = Field(default=16, ge=1, le=4096)
    learning_rate: float = Field(default=3e-3, gt=0.0, le=1.0)
    max_bytes: int = Field(default=4_000_000, ge=10_000, le=2_000_000_000)
    eval_tokens: int = Field(default=32_768, ge=256, le=100_000_000)

    @field_validator("train", "validation")
    @classmethod
    def _source_exists(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_source(value)
            except DataError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _validation_not_builtin_twice(self) -> LanguageModelingSpec:
        if self.validation is not None and self.validation == self.train:
            raise ValueError("validation must differ from train; omit it to split train instead")
        return self


@register_task("language-modeling")
class LanguageModelingTask(Task):
    """Next-token prediction. The metric is validation bits per character (lower is better)."""

    spec_model = LanguageModelingSpec
    metric_name: ClassVar[str] = "bits_per_char"
    direction: ClassVar[Literal["minimize", "maximize"]] = "minimize"
    spec: LanguageModelingSpec

    @cached_property
    def _texts(self) -> tuple[bytes, bytes]:
        s = self.spec
        train = read_corpus(s.train, max_bytes=s.max_bytes)
        if s.validation is not None:
            validation = read_corpus(s.validation, max_bytes=s.max_bytes)
        else:
            cut = int(len(train) * (1.0 - s.validation_fraction))
            while 0 < cut < len(train) and (train[cut] & 0xC0) == 0x80:
                cut += 1  # never split a UTF-8 character
            train, validation = train[:cut], train[cut:]
        minimum = 4 * (s.seq_len + 1)
        for name, data in (("train", train), ("validation", validation)):
            if len(data) < minimum:
                raise DataError(f"task.{name}: {len(data)} bytes is too little text for seq_len={s.seq_len}; "
                                f"give at least {minimum} bytes or lower task.seq_len")
        return train, validation

    @cached_property
    def _char_vocab(self) -> list[str]:
        train, validation = self._texts
        return sorted(set(train.decode("utf-8", errors="replace")) | set(validation.decode("utf-8", errors="replace")))

    def space_options(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size}

    @property
    def vocab_size(self) -> int:
        return 256 + BYTE_OFFSET if self.spec.tokenizer == "byte" else len(self._char_vocab) + 1

    def worst_metric(self) -> float:
        return math.log2(self.vocab_size) * (4.0 if self.spec.tokenizer == "byte" else 1.0)

    def encode(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Token ids, and for each token whether it starts a character (for bits per character)."""
        import numpy as np

        if self.spec.tokenizer == "byte":
            raw = np.frombuffer(data, dtype=np.uint8)
            return raw.astype(np.int64) + BYTE_OFFSET, (raw & 0xC0) != 0x80
        index = {ch: i + 1 for i, ch in enumerate(self._char_vocab)}
        ids = np.fromiter((index.get(ch, 0) for ch in data.decode("utf-8", errors="replace")), dtype=np.int64)
        return ids, np.ones(len(ids), dtype=bool)

    @cached_property
    def _train_ids(self) -> Tensor:
        import torch

        return torch.from_numpy(self.encode(self._texts[0])[0])

    def train(self, model: nn.Module, *, steps: int, seed: int, teacher: nn.Module | None = None,
              learning_rate: float | None = None, run: TrainingRun | None = None) -> float:
        """Next-token cross-entropy; the sparse-transformer space has no teacher, so `teacher` is unused."""
        import torch

        s = self.spec
        seq_len = min(s.seq_len, int(model.config.max_seq_len))  # type: ignore[union-attr]
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate or s.learning_rate, weight_decay=0.01)
        first, total = begin_run(run, steps=steps, optimizer=optimizer, generator=generator)
        warmup = max(1, total // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (first + step + 1) / warmup)
                                                     * 0.5 * (1 + math.cos(math.pi * (first + step) / max(1, total))))
        model.train()
        recent: list[float] = []
        for step in range(steps):
            batch = self._random_windows(generator, seq_len)
            loss = model(input_ids=batch, labels=batch).loss
            value = optimizer_step(loss, step=first + step, model=model, optimizer=optimizer, schedule=schedule)
            recent = (recent + [value])[-20:]
        model.eval()
        end_run(run, steps=steps, optimizer=optimizer, generator=generator)
        return sum(recent) / len(recent) if recent else float("nan")

    def _random_windows(self, generator: torch.Generator, seq_len: int) -> Tensor:
        import torch

        data = self._train_ids
        starts = torch.randint(0, len(data) - seq_len - 1, (self.spec.batch_size,), generator=generator)
        return torch.stack([data[i:i + seq_len] for i in starts.tolist()])

    def sample_batches(self, *, count: int, seed: int) -> list[dict[str, Tensor]]:
        import torch

        generator = torch.Generator().manual_seed(seed + 1)
        batches = [self._random_windows(generator, self.spec.seq_len) for _ in range(count)]
        return [{"input_ids": b, "labels": b} for b in batches]

    def fingerprint(self) -> str:
        import hashlib
        import json

        data = {**self.describe_data(), "seq_len": self.spec.seq_len, "batch_size": self.spec.batch_size}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]

    def evaluate(self, model: nn.Module) -> float:
        """Validation bits per character over up to `eval_tokens` tokens, in non-overlapping windows.

        The first token of each window has no context and is not scored; the characters counted are
        those whose first token is scored, so the figure is bits per character, not per byte.
        """
        import torch
        import torch.nn.functional as F

        s = self.spec
        ids, starts_char = self.encode(self._texts[1])
        seq_len = min(s.seq_len, int(model.config.max_seq_len))  # type: ignore[union-attr]
        windows = max(1, min(len(ids), s.eval_tokens) // seq_len)
        tokens = torch.from_numpy(ids[: windows * seq_len].copy()).view(windows, seq_len)
        char_starts = torch.from_numpy(starts_char[: windows * seq_len].copy()).view(windows, seq_len)
        total_nats = 0.0
        model.eval()
        with torch.inference_mode():
            for batch, starts in zip(tokens.split(64), char_starts.split(64)):
                logits = model(input_ids=batch).logits[:, :-1]
                nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1),
                                       reduction="sum")
                total_nats += float(nats)
        characters = int(char_starts[:, 1:].sum())
        return total_nats / math.log(2) / max(1, characters)

    def save_tokenizer(self, directory: Path) -> None:
        """A fast tokenizer (`tokenizer.json`, no remote code) that encodes as this task does and adds no
        special token to a prompt: bytes at ids b + 3 after ByT5's pad, eos and unk (GPT-2's byte-to-character
        table and a BPE without merges, so each byte is one token), or the task's characters."""
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        if self.spec.tokenizer == "byte":
            from transformers.convert_slow_tokenizer import bytes_to_unicode

            specials = {"<pad>": 0, "</s>": 1, "<unk>": 2}
            table = bytes_to_unicode()
            vocab = specials | {table[b]: b + BYTE_OFFSET for b in range(256)}
            tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
            tokenizer.decoder = decoders.ByteLevel()
            PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                    unk_token="<unk>").save_pretrained(str(directory))
            return

        vocab = {"<unk>": 0} | {ch: i + 1 for i, ch in enumerate(self._char_vocab)}
        tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
        PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>").save_pretrained(str(directory))

    def describe_data(self) -> dict[str, Any]:
        train, validation = self._texts
        return {"train_bytes": len(train), "validation_bytes": len(validation),
                "train_sha256": fingerprint(train), "validation_sha256": fingerprint(validation),
                "tokenizer": self.spec.tokenizer, "vocab_size": self.vocab_size}
