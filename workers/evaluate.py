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
from search_spaces.base import SearchSpace, get_space
from workers.tasks.base import Task, TaskSpec, make_task
from workers.types import CandidateTask, EvalResult

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"


def task_and_space(space: str, space_options: dict[str, Any], task: dict[str, Any] | TaskSpec) -> tuple[Task, SearchSpace]:
    """The task and the space of a job, bound together: the task gives the space its options (vocabulary,
    labels), the space gives the task its tokenizer (a pretrained base's)."""
    bound_task = make_task(task)
    bound_space = get_space(space, {**space_options, **bound_task.space_options()})
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


def _evaluate(candidate: CandidateTask) -> EvalResult:
    import torch
    from safetensors.torch import save_file

    from latency_models.meter import pinned_threads

    task, space = task_and_space(candidate.space, candidate.space_options, candidate.task)
    arch = Arch.from_dict(candidate.arch)
    space.validate(arch)
    with pinned_threads(candidate.threads):
        began = time.perf_counter()
        model = space.build(arch, seed=candidate.seed)
        if candidate.resume_from:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(candidate.resume_from), strict=True)
        params = sum(p.numel() for p in model.parameters())
        # A promoted trial trains on from its rung with a fresh optimiser and its own data order.
        train_loss = task.train(model, steps=candidate.train_steps - candidate.steps_before,
                                seed=candidate.seed + candidate.steps_before, teacher=space.teacher())
        train_s = time.perf_counter() - began
        began = time.perf_counter()
        metrics = task.evaluate_all(model)
        metric = metrics[task.metric_name]
        eval_s = time.perf_counter() - began
    if not torch.isfinite(torch.tensor(metric)):
        raise FloatingPointError(f"metric {task.metric_name} is {metric}; the candidate diverged")
    folder = Path(candidate.artifact_dir)
    folder.mkdir(parents=True, exist_ok=True)
    weights_path = folder / WEIGHTS_FILE
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(weights_path)
    return EvalResult(job_id=candidate.job_id, trial_number=candidate.trial_number, state="complete",
                      metric=float(metric), params=int(params), train_loss=train_loss, train_s=train_s,
                      eval_s=eval_s, weights_path=str(weights_path), worker=worker_name(),
                      extra={"metrics": metrics}, steps_done=candidate.train_steps)
