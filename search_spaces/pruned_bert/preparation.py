"""A `pruned-bert` job's preparation: the fine-tuned teacher, importance scores and (for a task-agnostic
supernet) that supernet, each cached so that later jobs on the same base and data find them.

The teacher is cached per base, task data (by content), fine-tuning budget, labels and seed; the importance
scores beside it (the same teacher, data and seed give the same scores), so jobs share them, and with them
their one-shot supernet, whose cache key holds both paths. The task-agnostic supernet is cached per base and
corpus (`search_spaces.pruned_bert.agnostic`), whatever the task.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces.base import Preparation, TaskRunner
from search_spaces.pruned_bert.importance import taylor_importance

if TYPE_CHECKING:
    from torch import Tensor

    from search_spaces.pruned_bert.space import PrunedBertSpace

logger = logging.getLogger(__name__)
TEACHER_FILE = "teacher.safetensors"
TEACHER_INFO = "teacher.json"
REPORT_EVERY_S = 2.0  # how often a long preparation step reports its progress


def prepare_pruned_bert(space: PrunedBertSpace, runner: TaskRunner, *, cache_dir: Path, seed: int,
                        report: Callable[[str], None] | None = None) -> Preparation:
    """Fine-tune the teacher, score importance, and train the task-agnostic supernet where the options ask;
    `report` hears each step as it starts, and the task-agnostic supernet's step and loss as it trains."""
    say = report or (lambda text: None)
    say(f"preparing: the fine-tuned teacher ({space.options.teacher_steps} steps, or the cached one)")
    teacher_dir = prepare_teacher(space, runner, cache_dir=Path(cache_dir), seed=seed)
    info = json.loads((teacher_dir / TEACHER_INFO).read_text(encoding="utf-8"))
    options: dict[str, Any] = {"teacher_dir": str(teacher_dir)}
    prepared = type(space)({**space.options.model_dump(), **options})
    path = teacher_dir / (f"importance-{space.options.importance}-{space.options.importance_batches}"
                          f"-seed{seed}.safetensors")
    if not path.is_file():
        say(f"preparing: {space.options.importance} importance of heads and units")
        began = time.perf_counter()
        if space.options.importance == "taylor":
            scores = taylor_importance(prepared.build(prepared.full_arch()),
                                       runner.sample_batches(count=space.options.importance_batches, seed=seed))
        else:
            scores = prepared.importance(prepared.full_state(), seed=seed)
        _save_atomic(scores.to_tensors(), path)
        logger.info("importance (%s) computed in %.1f s", space.options.importance, time.perf_counter() - began)
    options["importance_file"] = str(path)
    if space.options.supernet == "task-agnostic":
        from search_spaces.pruned_bert.agnostic import AgnosticRecipe, train_agnostic_supernet

        recipe = AgnosticRecipe(corpus=space.options.agnostic_corpus, steps=space.options.agnostic_steps, seed=seed,
                                seq_len=min(space.options.agnostic_seq_len, space.base.max_position_embeddings))
        last = [0.0]

        def progress(step: int, total: int, loss: float) -> None:
            if time.monotonic() - last[0] >= REPORT_EVERY_S or step == total:
                last[0] = time.monotonic()
                say(f"task-agnostic supernet: step {step} of {total}, loss {loss:.3f}")

        options["agnostic_supernet"] = str(train_agnostic_supernet(space, recipe, cache_dir=Path(cache_dir),
                                                                   progress=progress))
    baseline = {"arch": space.full_arch().to_dict(), "metric": info["metric"], "metric_name": info["metric_name"],
                "teacher_steps": info["steps"], "teacher_train_s": info["train_s"],
                "teacher_dir": str(teacher_dir)}
    return Preparation(options=options, baseline=baseline)


def prepare_teacher(space: PrunedBertSpace, runner: TaskRunner, *, cache_dir: Path, seed: int) -> Path:
    """The fine-tuned teacher's folder (`TEACHER_FILE`, `TEACHER_INFO`), trained now or found in the cache."""
    o = space.options
    key = hashlib.sha256(json.dumps({
        "base": space.base.fingerprint, "data": runner.fingerprint(), "steps": o.teacher_steps,
        "lr": o.teacher_learning_rate, "labels": o.num_labels, "seed": seed, "version": space.version,
    }, sort_keys=True).encode()).hexdigest()[:20]
    folder = cache_dir / "teachers" / key
    if (folder / TEACHER_INFO).is_file():
        logger.info("teacher cached at %s", folder)
        return folder
    from safetensors.torch import save_file

    blank = type(space)({**o.model_dump(), "teacher_dir": None})
    model = blank.build(blank.full_arch(), seed=seed)
    began = time.perf_counter()
    logger.info("fine-tuning the teacher (%s, %d steps)", o.base_model, o.teacher_steps)
    loss = float("nan")
    if o.teacher_steps:
        loss = runner.train(model, steps=o.teacher_steps, seed=seed, learning_rate=o.teacher_learning_rate)
    train_s = time.perf_counter() - began
    metric = runner.evaluate(model)
    tmp = cache_dir / "teachers" / f".{key}.{time.time_ns()}"
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / TEACHER_FILE))
    (tmp / TEACHER_INFO).write_text(json.dumps({
        "base_model": o.base_model, "steps": o.teacher_steps, "learning_rate": o.teacher_learning_rate,
        "metric_name": runner.metric_name, "metric": metric, "train_loss": loss, "train_s": train_s,
        "data": runner.fingerprint()}, indent=2), encoding="utf-8")
    try:
        tmp.rename(folder)
    except OSError:  # another job prepared the same teacher meanwhile: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("teacher: %s %.4f after %d steps (%.0f s)", runner.metric_name, metric, o.teacher_steps, train_s)
    return folder


def _save_atomic(tensors: dict[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{time.time_ns()}.tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
