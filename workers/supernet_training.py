"""Training a weight-sharing supernet with the sandwich rule (Once-for-All, BigNAS, HAT, AutoMoE), resumable
and cached.

The first `largest_first` share of the steps trains the largest arch alone (Once-for-All's progressive
shrinking, in one stage: the full network first, then the elastic ones); each later step trains the largest
arch, the smallest and `random_archs_per_step` random ones on the same batch, their gradients summed into the
shared weights. On the demo's space, 500 steps with 30% first scored the largest arch 3.08 bits per byte on
inherited weights against 3.25 with the sandwich from the start, eight random archs 3.38 on average against
3.61, and took 13% less time: the sandwich from the start spends its steps pulling every arch to the same
bigram-like plateau. The learning rate warms up and decays as in standalone training. With `distill` (off by
default: on the demo's space, 500 steps without it scored the largest arch 3.203 bits per char on inherited
weights against 3.397 with it, and five random archs better too), the smaller archs learn from the largest
arch's predictions on that batch (in-place distillation) besides the labels. Language modelling: the space's
supernet (`SupernetSpace.build_supernet`) maps `(input_ids, arch)` to next-token logits; a supernet with its own
objective (the pruned BERT's distillation from its teacher) defines `sandwich_loss(batch, arch, spec=...)`.

`run_supernet_task` is what a job's supernet phase runs: the supernet of a (space options, data, steps,
seed) is trained once into its own cache folder and reused by every later job on the same key. While it
trains it saves a checkpoint (weights, optimiser, generators, step) every `checkpoint_every_s`, so a killed
process resumes from the last one, not from zero; the finished supernet is one safetensors file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces.arch import Arch
from search_spaces.base import SearchSpace, SupernetSpace, random_archs
from search_spaces.errors import ArtifactStoreError
from workers.artifact_store import ArtifactStore

if TYPE_CHECKING:
    import torch
    from torch import nn

    from workers.tasks.base import Task

logger = logging.getLogger(__name__)

FORMAT_VERSION = 4  # of the supernet's training recipe and files: part of the cache key (2: distillation off
# by default, and named in the key; 3: warm-up and cosine schedule, MoE balancing loss, the largest arch alone
# for the first 30% of the steps; 4: attention blocks shared by their order among an arch's attention layers)
SUPERNET_FILE = "supernet.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
ProgressHook = Callable[[int, int, float], None]  # (step done, steps, loss of the largest arch)


@dataclass(frozen=True)
class SandwichStep:
    step: int
    loss_largest: float
    loss_smallest: float


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


def largest_arch(space: SupernetSpace) -> Arch:
    return space.sandwich_archs()[0]


def smallest_arch(space: SupernetSpace) -> Arch:
    return space.sandwich_archs()[1]


class SandwichTrainer:
    """The supernet's optimiser and its place in the run; `state_dict` / `load_state_dict` for checkpoints.

    The learning rate follows standalone training's schedule over `steps` (a linear warm-up over the first
    tenth, then a cosine decay to zero), from the task's `learning_rate` unless `learning_rate` is given. A
    constant rate left the weights noisy: after 300 steps the largest arch scored 3.64 bits per char against
    3.32 with the schedule (tiny-shakespeare, the default space).
    """

    def __init__(self, supernet: nn.Module, space: SupernetSpace, task: Task, *, seed: int, steps: int,
                 learning_rate: float | None = None, random_archs_per_step: int = 2, distill: bool = False,
                 largest_first: float | None = None) -> None:
        import torch

        self.supernet, self.space, self.task, self.seed, self.steps = supernet, space, task, seed, steps
        self.random_archs_per_step, self.distill = random_archs_per_step, distill
        if largest_first is None:
            largest_first = float(getattr(space, "supernet_largest_first", 0.3))
        self.largest_first_steps = int(largest_first * steps)
        self.learning_rate = learning_rate or float(getattr(task.spec, "learning_rate", 3e-3))
        self.optimizer = torch.optim.AdamW(supernet.parameters(), lr=self.learning_rate, weight_decay=0.01)
        self.step = 0

    def learning_rate_at(self, step: int) -> float:
        warmup = max(1, self.steps // 10)
        return self.learning_rate * min(1.0, (step + 1) / warmup) * 0.5 * (
            1 + math.cos(math.pi * min(step, self.steps) / max(1, self.steps)))

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The language-modelling loss, plus the supernet's auxiliary loss (MoE balancing) where it has one."""
        loss = lm_loss(logits, labels)
        aux = getattr(self.supernet, "aux_loss", None)
        return loss + aux if aux is not None else loss

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "weights": {k: v.detach().clone() for k, v in self.supernet.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["weights"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])

    def train_step(self) -> SandwichStep:
        """One sandwich step. Its batch and its random archs depend only on the seed and the step, so a run
        resumed from a checkpoint continues exactly as an uninterrupted one."""
        import torch
        import torch.nn.functional as F

        step, supernet = self.step, self.supernet
        torch.manual_seed(self.seed * 1_000_003 + step)
        largest, smallest = self.space.sandwich_archs()
        (batch,) = self.task.sample_batches(count=1, seed=self.seed * 1_000_003 + step)
        supernet.train()
        self.optimizer.zero_grad(set_to_none=True)
        custom = getattr(supernet, "sandwich_loss", None)  # a supernet with its own objective (pruned BERT)
        if custom is not None:
            loss_largest = custom(batch, largest, spec=self.task.spec)
            teacher_logits = None
        else:
            teacher_logits = supernet(batch["input_ids"], largest)
            loss_largest = self._loss(teacher_logits, batch["labels"])
        loss_largest.backward()
        soft_targets = F.softmax(teacher_logits.detach(), dim=-1) if self.distill and teacher_logits is not None \
            else None
        assert isinstance(self.space, SearchSpace)
        others = [smallest, *random_archs(self.space, count=self.random_archs_per_step,
                                          seed=random.Random(self.seed * 7_919 + step).randrange(2**31))]
        if step < self.largest_first_steps:
            others = []
        loss_smallest = float("nan")
        for index, arch in enumerate(others):
            if custom is not None:
                loss = custom(batch, arch, spec=self.task.spec)
            else:
                logits = supernet(batch["input_ids"], arch)
                loss = self._loss(logits, batch["labels"])
                if soft_targets is not None:
                    loss = 0.5 * loss + 0.5 * F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                              soft_targets.reshape(-1, soft_targets.shape[-1]))
            loss.backward()
            if index == 0:
                loss_smallest = float(loss.detach())
        torch.nn.utils.clip_grad_norm_(supernet.parameters(), 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate_at(step)
        self.optimizer.step()
        self.step += 1
        supernet.eval()
        return SandwichStep(step, float(loss_largest.detach()), loss_smallest)


def train_supernet(supernet: nn.Module, space: SupernetSpace, task: Task, *, steps: int, seed: int,
                   learning_rate: float | None = None, random_archs_per_step: int = 2,
                   distill: bool = False) -> list[SandwichStep]:
    """Train `supernet` in place for `steps` sandwich steps; the losses of the largest and the smallest arch
    at each step. Seeded: the same seed and steps give the same weights."""
    trainer = SandwichTrainer(supernet, space, task, seed=seed, steps=steps, learning_rate=learning_rate,
                              random_archs_per_step=random_archs_per_step, distill=distill)
    return [trainer.train_step() for _ in range(steps)]


# ---- the job's supernet: cached, checkpointed, resumable -------------------------------------------
@dataclass(frozen=True)
class SupernetTask:
    """Everything a worker needs to train (or find) one job's supernet; plain values (Ray-serialisable)."""

    space: str
    space_options: dict[str, Any]
    task: dict[str, Any]
    steps: int
    seed: int
    cache_dir: str
    threads: int = 1
    checkpoint_every_s: float = 120.0
    distill: bool = False  # in-place distillation from the largest arch (off: measured worse at short budgets)
    artifacts: dict[str, Any] | None = None  # `ArtifactLocation.to_dict()`: an object store behind cache_dir

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SupernetOutcome:
    path: str  # the finished supernet's weights
    key: str
    steps: int
    resumed_from_step: int  # 0: trained from the start (or found in the cache)
    cached: bool  # found finished: no training at all
    train_s: float
    worker: str = ""


PROGRESS_FILE = "progress.json"  # {"step", "steps", "loss"}: read by a controller whose supernet trains elsewhere
PROGRESS_EVERY_S = 2.0


def supernet_folder(job: SupernetTask) -> Path:
    """The cache folder of `job`'s supernet (reads the data to fingerprint it)."""
    from workers.evaluate import task_and_space

    task, space = task_and_space(job.space, job.space_options, job.task)
    key = supernet_key(space, task, steps=job.steps, seed=job.seed, distill=job.distill)
    return Path(job.cache_dir) / f"supernet-{key}"


def read_progress(folder: Path, store: ArtifactStore | None = None) -> tuple[int, int, float] | None:
    """The step, steps and loss a run training elsewhere last noted (`store`: fetched from the object store)."""
    if store is not None and store.remote:
        try:
            store.pull(folder / PROGRESS_FILE, overwrite=True)
        except ArtifactStoreError:  # the store did not answer this time: no news, the next poll asks again
            return None
    try:
        data = json.loads((folder / PROGRESS_FILE).read_text())
        return int(data["step"]), int(data["steps"]), float(data["loss"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def supernet_key(space: SearchSpace, task: Task, *, steps: int, seed: int, distill: bool = False) -> str:
    """What a supernet depends on: the space and its options, the data (by content, not by path) and the
    task's training settings, the steps, the seed, distillation, and this recipe's version."""
    spec = task.spec.model_dump(mode="json", exclude=set(type(task.spec).data_fields)
                                | set(type(task.spec).final_training_only))
    payload = {"space": space.name, "version": space.version, "options": space.options.model_dump(mode="json"),
               "task": spec, "data": task.describe_data(), "steps": steps, "seed": seed, "distill": distill,
               "format": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def run_supernet_task(job: SupernetTask, *, progress: ProgressHook | None = None,
                      should_stop: Callable[[], bool] = lambda: False) -> SupernetOutcome:
    """Train the job's supernet into its cache folder, or find it there (see the module's docstring)."""
    import torch
    from safetensors.torch import save_file

    from latency_models.meter import pinned_threads
    from workers.evaluate import task_and_space, worker_name

    began = time.perf_counter()
    store = ArtifactStore.of(job.artifacts)
    if store is not None:
        store.pull_referenced(job.task, job.space_options)
    task, space = task_and_space(job.space, job.space_options, job.task)
    if not isinstance(space, SupernetSpace):
        raise TypeError(f"space {job.space!r} has no weight-sharing supernet")
    key = supernet_key(space, task, steps=job.steps, seed=job.seed, distill=job.distill)
    folder = Path(job.cache_dir) / f"supernet-{key}"
    final = folder / SUPERNET_FILE
    checkpoint = folder / CHECKPOINT_FILE
    if store is not None and not final.is_file() and not store.pull(final):
        store.pull(checkpoint, overwrite=True)  # another node's run of this supernet stopped here
    if final.is_file():
        return SupernetOutcome(str(final), key, job.steps, 0, True, time.perf_counter() - began, worker_name())
    folder.mkdir(parents=True, exist_ok=True)

    def save_checkpoint() -> None:
        _atomic_save(trainer.state_dict(), checkpoint)
        if store is not None:
            store.push(checkpoint)

    with pinned_threads(job.threads):
        supernet = space.build_supernet(seed=job.seed)
        trainer = SandwichTrainer(supernet, space, task, seed=job.seed, steps=job.steps, distill=job.distill)
        resumed_from = 0
        if checkpoint.is_file():
            trainer.load_state_dict(torch.load(checkpoint, weights_only=True))
            resumed_from = trainer.step
            logger.info("supernet %s: resuming at step %d of %d", key, resumed_from, job.steps)
        saved_at = reported_at = time.monotonic()
        while trainer.step < job.steps:
            if should_stop():
                save_checkpoint()
                raise InterruptedError(f"supernet training stopped at step {trainer.step} (checkpoint saved)")
            result = trainer.train_step()
            if progress is not None:
                progress(trainer.step, job.steps, result.loss_largest)
            if time.monotonic() - reported_at >= PROGRESS_EVERY_S or trainer.step == job.steps:
                reported_at = time.monotonic()
                tmp = folder / (PROGRESS_FILE + ".tmp")
                tmp.write_text(json.dumps({"step": trainer.step, "steps": job.steps, "loss": result.loss_largest}))
                tmp.replace(folder / PROGRESS_FILE)
                if store is not None:
                    store.push(folder / PROGRESS_FILE)
            if time.monotonic() - saved_at >= job.checkpoint_every_s and trainer.step < job.steps:
                save_checkpoint()
                saved_at = time.monotonic()
    tmp = folder / (SUPERNET_FILE + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in supernet.state_dict().items()}, str(tmp))
    (folder / "supernet.json").write_text(json.dumps({**job.to_dict(), "key": key}, indent=1, default=str))
    tmp.replace(final)
    checkpoint.unlink(missing_ok=True)
    if store is not None:
        store.push(final)
        store.push(folder / "supernet.json")  # the marker, last
        store.delete(checkpoint)
    return SupernetOutcome(str(final), key, job.steps, resumed_from, False, time.perf_counter() - began,
                           worker_name())


_LOADED: dict[tuple[str, str], nn.Module] = {}


def load_supernet(space: SupernetSpace, path: str, *, seed: int = 0) -> nn.Module:
    """The trained supernet at `path` for `space` (kept per process: a worker evaluates many candidates on
    one supernet)."""
    from safetensors.torch import load_file

    assert isinstance(space, SearchSpace)
    cache_key = (path, space.options.model_dump_json())
    if cache_key not in _LOADED:
        supernet = space.build_supernet(seed=seed)
        supernet.load_state_dict(load_file(path), strict=True)
        supernet.eval()
        _LOADED.clear()  # one supernet at a time: they are large
        _LOADED[cache_key] = supernet
    return _LOADED[cache_key]
