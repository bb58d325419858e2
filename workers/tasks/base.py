"""The task contract: data plus loss plus metric, with its own spec model and tokenizer export."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from search_spaces.data_paths import DataPath, is_reference
from search_spaces.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor, nn


@dataclass
class TrainingRun:
    """Where a trial trained in rungs stands in its one training run, so that each rung continues it.

    `total_steps` is the length of the learning-rate schedule (the trial's whole budget); `start_step` the
    steps already done. `state` (None for a fresh run) holds the optimiser's state and the random
    generators' states after `start_step`; `Task.train` reads it, and leaves in it the state after its
    own steps (and advances `start_step`), so that rungs of 30, 60 and 180 steps train the same weights as
    270 steps in one go.
    """

    total_steps: int
    start_step: int = 0
    state: dict[str, Any] | None = None


class TaskSpec(BaseModel):
    """Base of each task's spec (the `task:` section of a job spec); unknown fields are refused.

    `data_fields` names the fields that hold data (a path, `builtin:NAME` or `dataset:...`) and whether a
    path there is a file or a folder; `dataset_formats` the uploaded dataset formats (`text`, `tsv`, ...)
    its file fields take; `remote_refused` names fields a spec sent to the server may not use,
    with the reason and the fix; `final_training_only` names fields that a supernet's training never reads
    (they stay out of its cache key, so a job that changes only them reuses the supernet).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_fields: ClassVar[dict[str, Literal["file", "folder"]]] = {}
    dataset_formats: ClassVar[tuple[str, ...]] = ()
    remote_refused: ClassVar[dict[str, str]] = {}
    final_training_only: ClassVar[frozenset[str]] = frozenset()

    kind: str

    @classmethod
    def data_paths(cls, raw: dict[str, Any]) -> list[DataPath]:
        """The fields of `raw` (the task as sent, not yet validated) that name the server's disk."""
        paths = []
        for name, kind in cls.data_fields.items():
            value = raw.get(name)
            if isinstance(value, str) and not is_reference(value):
                paths.append(DataPath(f"task.{name}", value, kind))
        for name, reason in cls.remote_refused.items():
            if raw.get(name) is not None:
                paths.append(DataPath(f"task.{name}", str(raw[name]), "refused", reason))
        return paths


@dataclass(frozen=True)
class Objective:
    """What a task's spec optimises: its metric's name and direction (known without reading any data)."""

    metric_name: str
    direction: Literal["minimize", "maximize"]

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


class Task(ABC):
    """Trains a built candidate for a number of steps and scores it on held-out data.

    `space_options()` gives the options a space must take from the task (vocabulary size, labels);
    `worst_metric()` is the value told to the strategy for candidates never trained.
    """

    kind: ClassVar[str]
    spec_model: ClassVar[type[TaskSpec]]
    metric_name: ClassVar[str]
    direction: ClassVar[Literal["minimize", "maximize"]]

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    @classmethod
    def objective_for(cls, spec: TaskSpec) -> Objective:
        """The objective of a task with this spec (a task whose metric the spec chooses overrides this)."""
        return Objective(cls.metric_name, cls.direction)

    @abstractmethod
    def space_options(self) -> dict[str, Any]: ...

    @abstractmethod
    def worst_metric(self) -> float: ...

    @abstractmethod
    def train(self, model: nn.Module, *, steps: int, seed: int, teacher: nn.Module | None = None,
              learning_rate: float | None = None, run: TrainingRun | None = None) -> float:
        """Train in place (distilling from `teacher` when given; `learning_rate` overrides the spec's);
        return the mean training loss of the last steps. With `run`, continue that training run (its
        schedule, optimiser and data order) for `steps` more steps, and update it."""

    @abstractmethod
    def evaluate(self, model: nn.Module) -> float:
        """The task metric on the validation data."""

    def evaluate_all(self, model: nn.Module) -> dict[str, float]:
        """Every metric the task reports; `metric_name`'s entry is the objective."""
        return {self.metric_name: self.evaluate(model)}

    @abstractmethod
    def sample_batches(self, *, count: int, seed: int) -> list[dict[str, Tensor]]:
        """`count` training batches (model inputs plus `labels`), for importance scores."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A digest of everything that changes what training sees (data, tokenizer, batch shape)."""

    @abstractmethod
    def save_tokenizer(self, directory: Path) -> None:
        """Write tokenizer files that `transformers.AutoTokenizer` loads from `directory`."""

    @abstractmethod
    def describe_data(self) -> dict[str, Any]:
        """Sizes and fingerprints of the data, for the model card and the job record."""


class TakesSpaceTokenizer(ABC):
    """A capability of a task that can take the tokenizer of a space built on a pretrained base."""

    @abstractmethod
    def use_tokenizer(self, directory: Path | None) -> None:
        """Take the space's tokenizer (a pretrained base's) unless the spec names one."""


def begin_run(run: TrainingRun | None, *, steps: int, optimizer: Any, generator: Any) -> tuple[int, int]:
    """Restore a continued run's optimiser and data-order state; `(first step, schedule length)`."""
    if run is None:
        return 0, steps
    if run.state is not None:
        optimizer.load_state_dict(run.state["optimizer"])
        generator.set_state(run.state["generator"])
    return run.start_step, run.total_steps


def end_run(run: TrainingRun | None, *, steps: int, optimizer: Any, generator: Any) -> None:
    """Leave in `run` the state after `steps` more steps."""
    if run is not None:
        run.state = {"optimizer": optimizer.state_dict(), "generator": generator.get_state()}
        run.start_step += steps


def optimizer_step(loss: Tensor, *, step: int, model: nn.Module, optimizer: Any, schedule: Any) -> float:
    """One clipped optimiser step on `loss`; a non-finite loss stops training with the fix. Returns the loss."""
    import torch

    if not torch.isfinite(loss):
        raise FloatingPointError(f"training diverged: loss {loss.item()} at step {step}; lower task.learning_rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    return float(loss.item())


TASKS: Registry[Task] = Registry("task", Task)


def register_task(kind: str):  # type: ignore[no-untyped-def]
    return TASKS.register(kind)


def task_classes() -> dict[str, type[Task]]:
    import workers.tasks.classification  # noqa: F401  (registers the built-in tasks)
    import workers.tasks.language_modeling  # noqa: F401

    return {name: TASKS.get(name) for name in TASKS.names()}


def _typed_spec(spec: dict[str, Any] | TaskSpec) -> tuple[type[Task], TaskSpec]:
    task_classes()
    kind = spec.kind if isinstance(spec, TaskSpec) else spec.get("kind")
    cls = TASKS.get(str(kind))
    typed = spec if isinstance(spec, cls.spec_model) else cls.spec_model.model_validate(
        spec.model_dump() if isinstance(spec, TaskSpec) else spec)
    return cls, typed


def task_objective(spec: dict[str, Any] | TaskSpec) -> Objective:
    """The objective of a task spec, without building the task (which reads and checks its data)."""
    cls, typed = _typed_spec(spec)
    return cls.objective_for(typed)


def make_task(spec: dict[str, Any] | TaskSpec) -> Task:
    """A task from its spec (already validated, or a plain dict from a `CandidateTask`)."""
    cls, typed = _typed_spec(spec)
    return cls(typed)
