"""Evaluation of one candidate: a pure function from a `CandidateTask` to an `EvalResult`.

Build the arch, train it for the budgeted steps with a fixed seed, score it on validation data, and
save its weights under the trial's own artifact folder. Any exception becomes a failed result with
its error text: a bad candidate never takes its job down. Executors are thin adapters around this.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from search_spaces.arch import Arch
from search_spaces.base import PreparedSpace, SearchSpace, SupernetSpace, get_space, teacher_of
from workers.artifact_store import ArtifactStore
from workers.tasks.base import TakesSpaceTokenizer, Task, TaskSpec, TrainingRun, make_task
from workers.types import CandidateTask, EvalResult

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"


def training_state_file(steps: int) -> str:
    """The optimiser's and generators' states at the end of a rung of `steps` steps."""
    return f"training_state-step{steps}.pt"


def rung_files(weights_path: str, steps: int) -> list[Path]:
    """The files a rung of `steps` steps saved (its weights at `weights_path`, its training state)."""
    weights = Path(weights_path)
    return [weights, weights.parent / training_state_file(steps)]


def task_and_space(space: str, space_options: dict[str, Any], task: dict[str, Any] | TaskSpec) -> tuple[Task, SearchSpace]:
    """The task and the space of a job, bound together: the task gives the space its options (vocabulary,
    labels), the space gives the task its tokenizer (a pretrained base's)."""
    bound_task = make_task(task)
    bound_space = get_space(space, {**space_options, **bound_task.space_options()})
    if isinstance(bound_task, TakesSpaceTokenizer) and isinstance(bound_space, PreparedSpace):
        bound_task.use_tokenizer(bound_space.tokenizer_dir())
    return bound_task, bound_space


def worker_name() -> str:
    """host:pid, with the Ray node's id when running in a Ray worker (several nodes may share a host)."""
    node = ""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            node = f":node-{ray.get_runtime_context().get_node_id()[:8]}"
    return f"{socket.gethostname()}{node}:{os.getpid()}"


def evaluate_candidate(candidate: CandidateTask) -> EvalResult:
    started = time.perf_counter()
    try:
        return _evaluate(candidate)
    except Exception as exc:  # noqa: BLE001  (a failed candidate is a result, not a crash)
        logger.warning("trial %s of job %s failed: %s", candidate.trial_number, candidate.job_id, exc)
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        return EvalResult(job_id=candidate.job_id, trial_number=candidate.trial_number, state="failed",
                          train_s=time.perf_counter() - started, worker=worker_name(),
                          error=f"{type(exc).__name__}: {exc}\n{tail}"[:4000])


def _training_run(candidate: CandidateTask) -> TrainingRun:
    """The candidate's training run: fresh, or continued from the state its last rung saved."""
    import torch

    run = TrainingRun(total_steps=max(candidate.schedule_steps or 0, candidate.train_steps),
                      start_step=candidate.steps_before)
    if candidate.resume_from:
        saved = Path(candidate.resume_from).parent / training_state_file(candidate.steps_before)
        if saved.is_file():
            run.state = torch.load(saved, weights_only=True)
    return run


def _evaluate(candidate: CandidateTask) -> EvalResult:
    import torch
    from safetensors.torch import save_file

    from latency_models.meter import pinned_threads

    store = ArtifactStore.of(candidate.artifacts)
    if store is not None:  # the files this task names (data, a teacher, a supernet, a rung to resume from)
        store.pull_referenced(candidate.task, candidate.space_options, candidate.supernet_path,
                              [str(path) for path in rung_files(candidate.resume_from, candidate.steps_before)]
                              if candidate.resume_from else None)
    task, space = task_and_space(candidate.space, candidate.space_options, candidate.task)
    arch = Arch.from_dict(candidate.arch)
    space.validate(arch)
    with pinned_threads(candidate.threads):
        began = time.perf_counter()
        if candidate.supernet_path:
            from workers.supernet_training import load_supernet

            if not isinstance(space, SupernetSpace):
                raise TypeError(f"space {candidate.space!r} has no weight-sharing supernet to inherit from")
            model = space.inherit(load_supernet(space, candidate.supernet_path, seed=candidate.seed), arch)
        else:
            model = space.build(arch, seed=candidate.seed)
        run = _training_run(candidate)
        if candidate.resume_from:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(candidate.resume_from), strict=True)
        params = sum(p.numel() for p in model.parameters())
        # A promoted trial continues its run (schedule, optimiser, data order) from its rung; with no saved
        # state (saved by an older version) it trains on with a fresh optimiser and its own data order.
        train_loss, metrics, kept_step = None, None, None
        if candidate.train_steps > candidate.steps_before:
            seed = candidate.seed + (0 if run.state else candidate.steps_before)
            if candidate.keep_best_every_steps > 0:
                train_loss, metrics, kept_step = _train_keeping_best(
                    task, model, steps=candidate.train_steps - candidate.steps_before, seed=seed,
                    teacher=teacher_of(space), run=run, every_steps=candidate.keep_best_every_steps)
            else:
                train_loss = task.train(model, steps=candidate.train_steps - candidate.steps_before, seed=seed,
                                        teacher=teacher_of(space), run=run)
        train_s = time.perf_counter() - began
        began = time.perf_counter()
        if metrics is None:
            metrics = task.evaluate_all(model)
        metric = metrics[task.metric_name]
        eval_s = time.perf_counter() - began
    if not torch.isfinite(torch.tensor(metric)):
        raise FloatingPointError(f"metric {task.metric_name} is {metric}; the candidate diverged")
    if candidate.supernet_path and candidate.train_steps == 0:  # inherited as it is: nothing worth saving
        return EvalResult(job_id=candidate.job_id, trial_number=candidate.trial_number, state="complete",
                          metric=float(metric), params=int(params), train_s=train_s, eval_s=eval_s,
                          worker=worker_name(), extra={"metrics": metrics, "inherited": True}, steps_done=0)
    folder = Path(candidate.artifact_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # A rung's files are named by its steps, so that a retried rung never resumes from a later one's.
    rung = run.total_steps > candidate.train_steps  # more rungs may follow: keep what continuing needs
    weights_path = folder / (f"weights-step{candidate.train_steps}.safetensors" if rung else WEIGHTS_FILE)
    tmp = folder / (weights_path.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(weights_path)
    if rung:
        tmp = folder / "training_state.tmp"
        torch.save(run.state, tmp)
        tmp.replace(folder / training_state_file(candidate.train_steps))
    if store is not None:
        store.push(folder)
    return EvalResult(job_id=candidate.job_id, trial_number=candidate.trial_number, state="complete",
                      metric=float(metric), params=int(params), train_loss=train_loss, train_s=train_s,
                      eval_s=eval_s, weights_path=str(weights_path), worker=worker_name(),
                      extra={"metrics": metrics, "inherited": bool(candidate.supernet_path),
                             **({"kept_step": kept_step} if kept_step is not None else {})},
                      steps_done=candidate.train_steps)


def _train_keeping_best(task: Task, model: Any, *, steps: int, seed: int, teacher: Any, run: TrainingRun,
                        every_steps: int) -> tuple[float, dict[str, float], int]:
    """Train `model` for `steps` in stretches of `every_steps` (one training run: the same weights as in one
    go), scoring it before and after each; leave in it the best-scoring weights (the earliest of ties).
    Returns the last stretch's training loss, the kept weights' metrics and the step they were kept at."""
    maximize = task.objective_for(task.spec).maximize
    best_metrics, kept_step = task.evaluate_all(model), run.start_step
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    loss, done = float("nan"), 0
    while done < steps:
        stretch = min(every_steps, steps - done)
        loss = task.train(model, steps=stretch, seed=seed, teacher=teacher, run=run)
        done += stretch
        metrics = task.evaluate_all(model)
        value, best = metrics[task.metric_name], best_metrics[task.metric_name]
        if value > best if maximize else value < best:
            best_metrics, kept_step = metrics, run.start_step
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if kept_step != run.start_step:
        model.load_state_dict(best_state)
    logger.info("kept the weights of step %d of %d (%s %.4f)", kept_step, run.start_step, task.metric_name,
                best_metrics[task.metric_name])
    return loss, best_metrics, kept_step
