"""Evaluation of one candidate: a pure function from a `CandidateTask` to an `EvalResult`.

Build the arch, train it for the budgeted steps with a fixed seed, score it on validation data, and
save its weights under the trial's own artifact folder. Any exception becomes a failed result with
its error text: a bad candidate never takes its job down. Executors are thin adapters around this.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from pathlib import Path

from search_spaces.arch import Arch
from search_spaces.base import get_space
from workers.tasks.base import make_task
from workers.types import CandidateTask, EvalResult

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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

    task = make_task(candidate.task)
    space = get_space(candidate.space, {**candidate.space_options, **task.space_options()})
    arch = Arch.from_dict(candidate.arch)
    space.validate(arch)
    with pinned_threads(candidate.threads):
        began = time.perf_counter()
        model = space.build(arch, seed=candidate.seed)
        params = sum(p.numel() for p in model.parameters())
        train_loss = task.train(model, steps=candidate.train_steps, seed=candidate.seed)
        train_s = time.perf_counter() - began
        began = time.perf_counter()
        metric = task.evaluate(model)
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
                      eval_s=eval_s, weights_path=str(weights_path), worker=worker_name())
