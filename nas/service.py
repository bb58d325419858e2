"""Use cases shared by the CLI (and later the API): submit, run, resume, cancel, inspect, export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.db.storage import Storage, isoformat, open_storage
from nas.pareto import Point, best_under
from nas.settings import Settings
from nas.spec import JobSpec
from search_spaces.errors import ConflictError, SpecError
from workers.executors.base import Executor

if TYPE_CHECKING:
    from workers.device_tasks import DeviceRunner
    from nas.db.models import JobRow
    from search_spaces.base import SearchSpace
    from workers.tasks.base import Task


def storage_for(settings: Settings) -> Storage:
    return open_storage(settings.resolved_database_url)


def executor_factory(settings: Settings) -> Callable[[], Executor]:
    """The executor named by the settings; Ray is started (or joined) on first use."""

    def make() -> Executor:
        if settings.executor == "in-process":
            from workers.executors.in_process import InProcessExecutor

            return InProcessExecutor()
        from workers.executors.ray_executor import RayExecutor

        return RayExecutor(address=settings.ray_address, slots=settings.max_parallel_trials,
                           cpus_per_trial=float(settings.training_threads))

    return make


def device_runner(settings: Settings) -> DeviceRunner:
    """Where device measurements run: Ray nodes carrying the device's resource, else here."""
    from workers.device_tasks import DeviceRunner

    return DeviceRunner(use_ray=settings.executor == "ray", ray_address=settings.ray_address)


def parse_space_options(space: str, options_json: str) -> SearchSpace:
    """A space from a name and its options as JSON text (the CLI's `--space-options`)."""
    import json

    from search_spaces.base import get_space, space_names

    if space not in space_names():
        raise SpecError(f"--space: unknown space {space!r}; choose one of: {', '.join(space_names())}")
    try:
        options = json.loads(options_json)
    except json.JSONDecodeError as exc:
        raise SpecError(f"--space-options: not valid JSON ({exc.msg} at column {exc.colno}); "
                        "give an object such as '{\"max_layers\": 3}'") from None
    if not isinstance(options, dict):
        raise SpecError(f"--space-options: must be a JSON object, got {type(options).__name__}")
    return get_space(space, options)


def latency_model_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "device": row.device, "space": row.space, "space_version": row.space_version,
            "space_key": row.space_key, "kind": row.kind, "report": row.report,
            "created_at": isoformat(row.created_at)}


def submit_job(storage: Storage, spec: JobSpec) -> int:
    """Store a validated spec as a queued job. The device profile must exist in the database."""
    storage.device(spec.device)
    return storage.create_job(spec=spec.model_dump(mode="json"), name=spec.name, space=spec.space,
                              device=spec.device, latency_target_ms=spec.latency_target_ms,
                              strategy=spec.strategy, trials_budget=spec.budget.trials)


def job_summary(storage: Storage, job_id: int) -> dict[str, Any]:
    job = storage.get_job(job_id)
    trials = storage.trials(job_id)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    checkpoints = storage.checkpoints(job_id)
    history = storage.hypervolume_history(job_id)
    return {
        "job_id": job.id, "name": job.name, "state": job.state, "space": job.space, "device": job.device,
        "latency_target_ms": job.latency_target_ms, "strategy": job.strategy, "trials_budget": job.trials_budget,
        "trials": len(trials), "trial_states": counts, "message": job.message,
        "created_at": isoformat(job.created_at), "started_at": isoformat(job.started_at),
        "finished_at": isoformat(job.finished_at), "hypervolume": history[-1].hypervolume if history else None,
        "checkpoint": checkpoint_dict(checkpoints[-1]) if checkpoints else None, "data": job.data_info,
        "baseline": (job.preparation or {}).get("baseline"),
        "latency_model": latency_model_dict(storage.latency_model(job.latency_model_id))
        if job.latency_model_id is not None else None,
    }


def job_task_and_space(job: JobRow) -> tuple[Task, SearchSpace]:
    """A stored job's task and space, with what its preparation made (the pruned-bert teacher, importance)."""
    from workers.evaluate import task_and_space

    spec = JobSpec.model_validate(job.spec)
    prepared = (job.preparation or {}).get("options") or {}
    return task_and_space(spec.space, {**spec.space_options, **prepared}, spec.task)


def checkpoint_dict(row: Any) -> dict[str, Any]:
    return {"path": row.path, "archive": row.archive_path, "sha256": row.sha256, "size_bytes": row.size_bytes,
            "measured_latency_ms": row.measured_latency_ms}


def front_rows(storage: Storage, job_id: int) -> list[dict[str, Any]]:
    from search_spaces.base import space_class

    describe = space_class(storage.get_job(job_id).space).describe
    return [{"trial": t.number, "metric": m.metric, "latency_ms": m.latency_ms, "arch_text": describe(t.arch["config"]),
             "predicted_latency_ms": t.predicted_latency_ms, "predicted_latency_std_ms": t.predicted_latency_std_ms,
             "measured_latency_ms": t.measured_latency_ms,
             "params": t.params, "metrics": t.metrics, "arch": t.arch["config"], "arch_hash": t.arch_hash}
            for m, t in storage.front(job_id)]


def trial_rows(storage: Storage, job_id: int) -> list[dict[str, Any]]:
    return [{"trial": t.number, "state": t.state, "metric": t.metric, "metrics": t.metrics,
             "latency_ms": t.latency_ms, "params": t.params,
             "arch_hash": t.arch_hash, "error": (t.error or "").splitlines()[0] if t.error else None}
            for t in storage.trials(job_id)]


def export_job_trial(storage: Storage, job_id: int, *, trial_number: int | None,
                     out_dir: Path) -> dict[str, Any]:
    """Export a trial (default: the best front member under the target) to `out_dir`."""
    from nas.checkpoints import export_and_record
    from workers.tasks.base import make_task

    job = storage.get_job(job_id)
    if trial_number is None:
        maximize = make_task(JobSpec.model_validate(job.spec).task).direction == "maximize"
        front = [Point(t.number, m.metric, m.latency_ms) for m, t in storage.front(job_id)]
        best = best_under(front, max_latency_ms=job.latency_target_ms, maximize_metric=maximize)
        if best is None:
            raise ConflictError(f"job {job_id} has no trained trial under its target of {job.latency_target_ms} ms; "
                                "pass --trial N to export another trial")
        trial_number = best.key
    trial = storage.trial(job_id, trial_number)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SpecError(f"--out: {str(out_dir)!r} exists and is not empty; give a new or empty folder")
    checkpoint_id = export_and_record(storage, job_id=job_id, trial=trial, latency_ms=trial.latency_ms or 0.0,
                                      out_dir=out_dir)
    row = next(c for c in storage.checkpoints(job_id) if c.id == checkpoint_id)
    return {"job_id": job_id, "trial": trial_number, **checkpoint_dict(row)}
