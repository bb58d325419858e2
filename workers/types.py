"""Plain values that cross the controller/worker boundary (and Ray's serialisation)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class CandidateTask:
    """Everything a worker needs to evaluate one candidate; no database handle, no shared state."""

    job_id: int
    trial_number: int
    space: str
    space_options: dict[str, Any]
    arch: dict[str, Any]
    task: dict[str, Any]
    train_steps: int
    seed: int
    artifact_dir: str
    threads: int = 1
    attempt: int = 1
    # Early stopping: continue a trial that reached `steps_before` steps from the weights (and the training
    # state) it saved there; `schedule_steps` is the length of its whole run (None: `train_steps`).
    resume_from: str | None = None
    steps_before: int = 0
    schedule_steps: int | None = None
    # One-shot search: start from the arch's slices of this trained supernet instead of a fresh model
    # (`train_steps` 0: evaluate the inherited weights as they are, and save none).
    supernet_path: str | None = None
    # Where the artifacts live (`workers.artifact_store.ArtifactLocation.to_dict()`): with an object store, the
    # worker pulls the files this task names and pushes the weights it saves. None: one shared folder.
    artifacts: dict[str, Any] | None = None
    # Final training: score the model before training and every this many steps, and keep the best weights
    # (by the task's metric and direction); 0: the last step's.
    keep_best_every_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalResult:
    """What a worker returns: a metric and a parameter count, or a failure with its error text."""

    job_id: int
    trial_number: int
    state: Literal["complete", "failed"]
    metric: float | None = None
    params: int | None = None
    train_loss: float | None = None
    train_s: float = 0.0
    eval_s: float = 0.0
    weights_path: str | None = None
    worker: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    steps_done: int | None = None
    # The worker died (node lost, process killed): the candidate itself did not fail, so it may run again.
    lost: bool = False
