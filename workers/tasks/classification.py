"""The `classification` task: single texts or text pairs with a label; accuracy, and F1 for binary tasks."""

from __future__ import annotations

import hashlib
import json
import math
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from search_spaces.data_paths import DATASET_PREFIX, parse_dataset_ref
from search_spaces.errors import DataError
from workers.tasks.base import (
    Objective,
    TakesSpaceTokenizer,
    Task,
    TaskSpec,
    TrainingRun,
    begin_run,
    end_run,
    optimizer_step,
    register_task,
)
from workers.tasks.augmentation import NeighbourTable, augmentation_generator, neighbour_table
from workers.tasks.table_files import Columns, Examples, FileFormat, read_file, read_hub_split

if TYPE_CHECKING:
    from torch import Tensor, nn


class ClassificationSpec(TaskSpec):
    data_fields: ClassVar[dict[str, Literal["file", "folder"]]] = {
        "train": "file", "validation": "file", "tokenizer": "folder"}
    dataset_formats: ClassVar[tuple[str, ...]] = ("tsv", "csv", "jsonl")
    final_training_only: ClassVar[frozenset[str]] = frozenset(
        {"augment_share", "augment_token_p", "augment_neighbours"})
    remote_refused: ClassVar[dict[str, str]] = {
        "dataset": "a Hugging Face dataset name is looked up on the server's disk; upload the splits as "
                   "datasets and name them in task.train and task.validation (dataset:NAME)"}

    kind: Literal["classification"] = "classification"
    train: str | None = Field(default=None, description="training examples: dataset:NAME (an uploaded TSV, CSV "
                                                        "or JSONL dataset) or a file path")
    validation: str | None = Field(default=None, description="validation (dev) examples: dataset:NAME or a path")
    dataset: str | None = Field(default=None, description="a Hugging Face dataset name, loaded offline")
    dataset_config: str | None = None
    train_split: str = "train"
    validation_split: str = "validation"
    format: FileFormat = "auto"
    text_column: str = Field(default="sentence", min_length=1)
    text_pair_column: str | None = None
    label_column: str = Field(default="label", min_length=1)
    label_names: tuple[str, ...] | None = Field(default=None, description="names for the labels, in sorted order")
    metric: Literal["accuracy", "f1", "mcc"] = Field(
        default="accuracy",
        description="what the search ranks by: accuracy; f1 (of label id 1, binary tasks); mcc (Matthews "
                    "correlation, -1 to 1: a model that predicts one class for everything scores 0, where its "
                    "f1 can look good on imbalanced data)")
    tokenizer: str | None = Field(default=None, description="tokenizer folder; default: the base model's")
    max_seq_len: int = Field(default=128, ge=8, le=4096)
    batch_size: int = Field(default=32, ge=1, le=4096)
    eval_batch_size: int = Field(default=64, ge=1, le=4096)
    learning_rate: float = Field(default=1e-4, gt=0.0, le=1.0)
    max_train_examples: int | None = Field(default=None, ge=1)
    distill_alpha: float = Field(default=0.5, ge=0.0, le=1.0, description="weight of the teacher's soft labels")
    distill_temperature: float = Field(default=2.0, gt=0.0, le=100.0)
    distill_hidden_weight: float = Field(
        default=0.0, ge=0.0, le=100.0,
        description="weight of hidden-state distillation (DynaBERT): the mean squared error of each kept layer's "
                    "output against the teacher's same layer; 0: logits only")
    augment_share: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="with a teacher (a pruned model's distillation; the supernet and the teacher's own "
                    "fine-tuning never augment): the share of each training batch perturbed, TinyBERT-style, each "
                    "piece replaced with probability augment_token_p by one of its augment_neighbours nearest "
                    "pieces in the teacher's input embeddings; a perturbed example learns from the teacher's soft "
                    "labels only (its gold label may no longer hold). 0: no augmentation")
    augment_token_p: float = Field(default=0.3, gt=0.0, le=1.0)
    augment_neighbours: int = Field(default=8, ge=1, le=1000)

    @model_validator(mode="after")
    def _one_source(self) -> ClassificationSpec:
        files = self.train is not None or self.validation is not None
        if files and self.dataset is not None:
            raise ValueError("give either task.train and task.validation files or task.dataset, not both")
        if self.dataset is None and (self.train is None or self.validation is None):
            raise ValueError("task.train and task.validation files are both needed (or a task.dataset name)")
        for name in ("train", "validation"):
            value = getattr(self, name)
            if value is not None and value.startswith(DATASET_PREFIX):
                parse_dataset_ref(value)  # its form only: the service resolves it before the task reads it
            elif value is not None and not Path(value).expanduser().is_file():
                raise ValueError(f"task.{name}: no such file {value!r}; give a TSV, CSV or JSONL file")
        if self.train is not None and self.train == self.validation:
            raise ValueError("task.validation must differ from task.train")
        if self.text_pair_column is not None and self.text_pair_column == self.text_column:
            raise ValueError("task.text_pair_column must differ from task.text_column")
        return self


def _label_order(values: set[str]) -> list[str]:
    """Numeric labels first in numeric order (so '2' < '10'), then the others alphabetically."""

    def key(value: str) -> tuple[int, float, str]:
        try:
            return (0, float(value), value)
        except ValueError:
            return (1, 0.0, value)

    return sorted(values, key=key)


@register_task("classification")
class ClassificationTask(Task, TakesSpaceTokenizer):
    """Fine-tunes a sequence classifier; with a teacher, distils from its soft labels (Hinton et al.)."""

    spec_model = ClassificationSpec
    direction: ClassVar[Literal["minimize", "maximize"]] = "maximize"
    spec: ClassificationSpec

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        self._tokenizer_dir: Path | None = Path(self.spec.tokenizer) if self.spec.tokenizer else None

    @property
    def metric_name(self) -> str:  # type: ignore[override]
        return self.spec.metric

    @classmethod
    def objective_for(cls, spec: TaskSpec) -> Objective:
        assert isinstance(spec, ClassificationSpec)
        return Objective(spec.metric, cls.direction)

    # ---- data ------------------------------------------------------------------------------------
    @cached_property
    def _splits(self) -> tuple[Examples, Examples]:
        s = self.spec
        columns = Columns(text=s.text_column, pair=s.text_pair_column, label=s.label_column)
        if s.dataset is not None:
            train = read_hub_split(s.dataset, config=s.dataset_config, split=s.train_split, columns=columns,
                                   field="task.dataset")
            validation = read_hub_split(s.dataset, config=s.dataset_config, split=s.validation_split,
                                        columns=columns, field="task.dataset")
        else:
            train = read_file(Path(s.train or "").expanduser(), fmt=s.format, columns=columns, field="task.train")
            validation = read_file(Path(s.validation or "").expanduser(), fmt=s.format, columns=columns,
                                   field="task.validation")
        return train, validation

    @cached_property
    def labels(self) -> list[str]:
        """Raw label values in id order."""
        train, validation = self._splits
        order = _label_order(set(train.labels))
        if len(order) < 2:
            raise DataError(f"task.train: {train.source} has a single label {order}; classification needs two or more")
        known = set(order)
        unknown = [(line, v) for line, v in zip(validation.lines, validation.labels) if v not in known]
        if unknown:
            line, value = unknown[0]
            raise DataError(f"{validation.source}:{line}: label {value!r} never occurs in the training data "
                            f"(labels {order}); fix the label or the label column")
        return order

    @cached_property
    def label_names(self) -> list[str]:
        """The dataset's own names for the labels (a hub dataset's class names, or the file's values)."""
        if self.spec.label_names is not None:
            if len(self.spec.label_names) != len(self.labels):
                raise DataError(f"task.label_names: {len(self.spec.label_names)} names for {len(self.labels)} labels "
                                f"{self.labels}; give one name per label, in that order")
            return list(self.spec.label_names)
        names = self._splits[0].label_names
        if names is not None and all(v.isdigit() and int(v) < len(names) for v in self.labels):
            return [names[int(v)] for v in self.labels]
        return list(self.labels)

    def space_options(self) -> dict[str, Any]:
        if self.spec.metric == "f1" and len(self.labels) != 2:
            raise DataError(f"task.metric: f1 is for binary tasks; this one has {len(self.labels)} labels; "
                            "use accuracy")
        return {"num_labels": len(self.labels), "labels": tuple(self.label_names)}

    def worst_metric(self) -> float:
        return -1.0 if self.spec.metric == "mcc" else 0.0

    def use_tokenizer(self, directory: Path | None) -> None:
        if self.spec.tokenizer is None and directory is not None:
            self._tokenizer_dir = Path(directory)

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        if self._tokenizer_dir is None:
            raise DataError("task.tokenizer: this space has no base model tokenizer; give task.tokenizer (a folder)")
        return AutoTokenizer.from_pretrained(str(self._tokenizer_dir))

    def _encode(self, examples: Examples) -> tuple[list[list[int]], list[list[int]], Tensor]:
        import torch

        index = {v: i for i, v in enumerate(self.labels)}
        encoded = self.tokenizer(examples.texts, examples.pairs, truncation=True, max_length=self.spec.max_seq_len)
        types = encoded.get("token_type_ids") or [[0] * len(ids) for ids in encoded["input_ids"]]
        labels = torch.tensor([index[v] for v in examples.labels], dtype=torch.long)
        return encoded["input_ids"], types, labels

    @cached_property
    def _train(self) -> tuple[list[list[int]], list[list[int]], Tensor]:
        ids, types, labels = self._encode(self._splits[0])
        limit = self.spec.max_train_examples
        return (ids[:limit], types[:limit], labels[:limit]) if limit else (ids, types, labels)

    @cached_property
    def _validation(self) -> tuple[list[list[int]], list[list[int]], Tensor]:
        return self._encode(self._splits[1])

    def _collate(self, data: tuple[list[list[int]], list[list[int]], Tensor], rows: list[int]) -> dict[str, Tensor]:
        """A batch padded to its own longest example (far cheaper than padding to max_seq_len)."""
        import torch

        ids, types, labels = data
        width = max(len(ids[i]) for i in rows)
        pad = int(self.tokenizer.pad_token_id or 0)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        token_types = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            n = len(ids[i])
            input_ids[r, :n] = torch.tensor(ids[i])
            token_types[r, :n] = torch.tensor(types[i])
            mask[r, :n] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": token_types,
                "labels": labels[rows]}

    def sample_batches(self, *, count: int, seed: int) -> list[dict[str, Tensor]]:
        import torch

        generator = torch.Generator().manual_seed(seed + 1)
        n = len(self._train[0])
        return [self._collate(self._train, torch.randint(0, n, (self.spec.batch_size,), generator=generator).tolist())
                for _ in range(count)]

    # ---- training and scoring -------------------------------------------------------------------
    def train(self, model: nn.Module, *, steps: int, seed: int, teacher: nn.Module | None = None,
              learning_rate: float | None = None, run: TrainingRun | None = None) -> float:
        """AdamW with linear warm-up and decay; loss = (1 - a) CE + a T^2 KL(teacher || student) with a teacher."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # dropout draws from the global generator: seed it for reproducible runs
            if run is not None and run.state is not None:
                torch.set_rng_state(run.state["dropout"])
            loss = self._train_loop(model, steps=steps, seed=seed, teacher=teacher, learning_rate=learning_rate,
                                    run=run)
            if run is not None:  # `end_run` left the run's state: dropout's generator goes with it
                run.state["dropout"] = torch.get_rng_state()  # type: ignore[index]
            return loss

    def _train_loop(self, model: nn.Module, *, steps: int, seed: int, teacher: nn.Module | None,
                    learning_rate: float | None, run: TrainingRun | None) -> float:
        import torch
        import torch.nn.functional as F

        from search_spaces.distillation import logit_distillation_loss

        s = self.spec
        n = len(self._train[0])
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=learning_rate or s.learning_rate, weight_decay=0.01)
        first, total = begin_run(run, steps=steps, optimizer=optimizer, generator=generator)
        warmup = max(1, total // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
            (first + step + 1) / warmup, max(0.0, (total - first - step) / max(1, total - warmup))))
        alpha, temperature = s.distill_alpha, s.distill_temperature
        if teacher is not None:
            teacher.eval()
        neighbours = self._neighbours(teacher) if teacher is not None and s.augment_share > 0 else None
        model.train()
        recent: list[float] = []
        for step in range(steps):
            inputs = self._collate(self._train, torch.randint(0, n, (s.batch_size,), generator=generator).tolist())
            labels = inputs.pop("labels")
            perturbed = None
            if neighbours is not None:
                draws = augmentation_generator(seed, first + step)
                perturbed = torch.rand(len(labels), generator=draws) < s.augment_share  # type: ignore[call-overload]
                inputs["input_ids"] = neighbours.replace(inputs["input_ids"], rows=perturbed,
                                                         token_p=s.augment_token_p, generator=draws)
            hidden = teacher is not None and s.distill_hidden_weight > 0
            out = model(**inputs, output_hidden_states=True) if hidden else model(**inputs)
            logits = out.logits.float()
            loss = F.cross_entropy(logits, labels)
            if teacher is not None and (alpha > 0 or hidden or perturbed is not None):
                with torch.no_grad():
                    taught = teacher(**inputs, output_hidden_states=hidden)
                loss = logit_distillation_loss(logits, labels, taught.logits.float(), alpha=alpha,
                                               temperature=temperature, gold=None if perturbed is None else ~perturbed)
                if hidden:
                    loss = loss + s.distill_hidden_weight * hidden_state_loss(
                        out.hidden_states, taught.hidden_states,
                        sources=model.config.source_layers,  # type: ignore[union-attr]
                        attention_mask=inputs.get("attention_mask"))
            value = optimizer_step(loss, step=first + step, model=model, optimizer=optimizer, schedule=schedule)
            recent = (recent + [value])[-20:]
        model.eval()
        end_run(run, steps=steps, optimizer=optimizer, generator=generator)
        return sum(recent) / len(recent) if recent else float("nan")

    def _neighbours(self, teacher: nn.Module) -> NeighbourTable:
        """The augmentation's neighbour table for this teacher's embeddings (built once per task and teacher)."""
        cached = getattr(self, "_neighbour_cache", None)
        if cached is not None and cached[0] is teacher:
            return cached[1]
        table = neighbour_table(teacher, token_ids=self._train[0], special_ids=self.tokenizer.all_special_ids,
                                neighbours=self.spec.augment_neighbours)
        self._neighbour_cache = (teacher, table)
        return table

    def predict(self, model: nn.Module) -> list[int]:
        """Predicted label ids for the validation examples, in file order."""
        import torch

        ids = self._validation[0]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths batch together
        predictions = [0] * len(ids)
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), self.spec.eval_batch_size):
                rows = order[start:start + self.spec.eval_batch_size]
                batch = self._collate(self._validation, rows)
                batch.pop("labels")
                for row, label in zip(rows, model(**batch).logits.argmax(-1).tolist()):
                    predictions[row] = int(label)
        return predictions

    def evaluate_all(self, model: nn.Module) -> dict[str, float]:
        from sklearn.metrics import matthews_corrcoef

        gold = self._validation[2].tolist()
        predicted = self.predict(model)
        metrics = {"accuracy": sum(p == g for p, g in zip(predicted, gold)) / len(gold)}
        if len(self.labels) == 2:  # F1 of label id 1 (GLUE's positive class)
            tp = sum(p == 1 and g == 1 for p, g in zip(predicted, gold))
            fp = sum(p == 1 and g == 0 for p, g in zip(predicted, gold))
            fn = sum(p == 0 and g == 1 for p, g in zip(predicted, gold))
            metrics["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        # Matthews correlation (any number of classes); 0 where only one class occurs at all
        metrics["mcc"] = float(matthews_corrcoef(gold, predicted)) if len(set(gold) | set(predicted)) > 1 else 0.0
        return metrics

    def evaluate(self, model: nn.Module) -> float:
        value = self.evaluate_all(model)[self.spec.metric]
        return value if math.isfinite(value) else float("nan")

    # ---- export and records ---------------------------------------------------------------------
    def save_tokenizer(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(str(directory))

    def describe_data(self) -> dict[str, Any]:
        train, validation = self._splits
        return {"train": train.source, "validation": validation.source, "train_examples": len(train),
                "validation_examples": len(validation), "train_sha256": train.sha256,
                "validation_sha256": validation.sha256, "labels": self.labels, "label_names": self.label_names,
                "text_column": self.spec.text_column, "text_pair_column": self.spec.text_pair_column,
                "label_column": self.spec.label_column, "max_seq_len": self.spec.max_seq_len}

    def fingerprint(self) -> str:
        """Everything that changes what training sees: data, labels, tokenizer, lengths, batch size."""
        data = {**self.describe_data(), "tokenizer": str(self._tokenizer_dir), "batch_size": self.spec.batch_size,
                "max_train_examples": self.spec.max_train_examples}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]


def hidden_state_loss(student: tuple[Tensor, ...], teacher: tuple[Tensor, ...], *, sources: list[int],
                      attention_mask: Tensor | None) -> Tensor:
    """Each kept layer's output (`student[j + 1]`) against the teacher's layer it was cut from
    (`teacher[sources[j] + 1]`): the layer mapping that dropping layers needs, on the supernet's loss."""
    from search_spaces.distillation import hidden_state_mse

    if not sources:
        return student[0].new_zeros(())
    return hidden_state_mse([(student[j + 1], teacher[source + 1]) for j, source in enumerate(sources)],
                            attention_mask=attention_mask)
