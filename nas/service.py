"""Use cases shared by the CLI and the API: submit, run, resume, cancel, inspect, export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.db.records import CheckpointRecord, LatencyModelRecord, TokenRecord, TrialRecord
from nas.db.storage import Storage, isoformat, open_storage
from nas.engine.pareto import Point, best_under
from nas.settings import Settings
from nas.spec import JobSpec
from nas.views import CheckpointOut, FrontMemberOut, FrontOut, JobOut, LatencyModelOut, TokenOut, TrialOut
from search_spaces.errors import ConflictError, SpecError
from workers.executors.base import Executor

if TYPE_CHECKING:
    from workers.artifact_store import ArtifactStore
    from workers.device_tasks import DeviceRunner
    from nas.db.records import JobRecord
    from search_spaces.base import SearchSpace


def storage_for(settings: Settings) -> Storage:
    # One connection per database thread of the API, and a few for the event pollers and the serve loop.
    return open_storage(settings.resolved_database_url, pool_size=settings.api_threads + 4)


def executor_factory(settings: Settings) -> Callable[[], Executor]:
    """The executor named by the settings (`workers.executors` registry); Ray is started (or joined) on first
    use."""
    from workers.executors.base import ExecutorOptions, make_executor

    options = ExecutorOptions(address=settings.ray_address, slots=settings.max_parallel_trials,
                              cpus_per_trial=float(settings.training_threads))
    return lambda: make_executor(settings.executor, options)


def device_runner(settings: Settings) -> DeviceRunner:
    """Where device measurements run: Ray nodes carrying the device's resource, else here."""
    from workers.device_tasks import DeviceRunner

    return DeviceRunner(use_ray=settings.executor == "ray", ray_address=settings.ray_address,
                        artifacts=settings.artifact_location().to_dict())


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


def latency_model_view(row: LatencyModelRecord) -> LatencyModelOut:
    return LatencyModelOut(id=row.id, device=row.device, space=row.space, space_version=row.space_version,
                           space_key=row.space_key, kind=row.kind, report=row.report,
                           created_at=isoformat(row.created_at))


def issue_token(storage: Storage, *, name: str, scope: str, expires_in_s: float | None = None) -> tuple[int, str]:
    """Create a bearer token of `scope` (expiring after `expires_in_s`, None: never); returns (id, token).
    The token is shown once: only its hash is kept."""
    from datetime import UTC, datetime, timedelta

    from nas.auth import SCOPES, TOKEN_PREFIX, hash_token, new_token

    if scope not in SCOPES:
        raise SpecError(f"scope: must be one of {', '.join(SCOPES)}, got {scope!r}")
    name = name.strip()
    if not name or len(name) > 200:
        raise SpecError(f"name: must be 1 to 200 characters, got {len(name)}")
    token = new_token()
    expires_at = datetime.now(UTC) + timedelta(seconds=expires_in_s) if expires_in_s is not None else None
    token_id = storage.add_token(name=name, scope=scope, token_hash=hash_token(token),
                                 prefix=token[:len(TOKEN_PREFIX) + 4], expires_at=expires_at)
    return token_id, token


def token_view(row: TokenRecord) -> TokenOut:
    """A stored token as the CLI and the API list it (never the token or its hash)."""
    return TokenOut(id=row.id, name=row.name, scope=row.scope, prefix=row.prefix,
                    created_at=isoformat(row.created_at), expires_at=isoformat(row.expires_at),
                    last_used_at=isoformat(row.last_used_at), revoked_at=isoformat(row.revoked_at))


def issue_first_admin_token(storage: Storage) -> str | None:
    """An admin token when the database has none at all (a first start), else None."""
    if storage.list_tokens():
        return None
    return issue_token(storage, name="first admin (hwnas serve)", scope="admin")[1]


def submit_job(storage: Storage, spec: JobSpec, *, created_by: str | None = None) -> int:
    """Store a validated spec as a queued job. The device profile must exist in the database; `dataset:`
    references are pinned to their content and the job's use of them recorded (`nas.datasets`)."""
    from nas.datasets import pin_datasets

    device = storage.device(spec.device)
    if device.workload == "decode":
        from search_spaces.base import DecodeSpace, space_class

        if not issubclass(space_class(spec.space), DecodeSpace):
            problem = (f"device: profile {device.name!r} times token generation (workload: decode), and space "
                       f"{spec.space!r} is not a causal language model; pick a profile with workload: forward")
            raise SpecError("invalid job spec: " + problem, problems=[problem])
    spec, dataset_sha256s = pin_datasets(storage, spec)
    return storage.create_job(spec=spec.model_dump(mode="json"), name=spec.name, space=spec.space,
                              device=spec.device, latency_target_ms=spec.latency_target_ms,
                              strategy=spec.strategy, trials_budget=spec.budget.trials, created_by=created_by,
                              dataset_sha256s=dataset_sha256s)


def job_metric(job: JobRecord) -> tuple[str, bool]:
    """The job's task metric name and whether higher is better (without building its task)."""
    from nas.engine.bound_job import job_objective

    objective = job_objective(job)
    return objective.metric_name, objective.maximize


def job_summary(storage: Storage, job_id: int) -> JobOut:
    """A job as the CLI and the API show it: state, progress, front size, checkpoint, latency model."""
    job = storage.get_job(job_id)
    return job_summaries(storage, [job])[0]


def job_summaries(storage: Storage, jobs: list[JobRecord]) -> list[JobOut]:
    """Jobs as the CLI and the API show them, in a fixed number of queries however many jobs."""
    ids = [job.id for job in jobs]
    counts = storage.trial_state_counts_for(ids)
    checkpoints = storage.latest_checkpoints(ids)
    hypervolumes = storage.latest_hypervolumes(ids)
    models = storage.latency_models_by_id(sorted({j.latency_model_id for j in jobs if j.latency_model_id}))
    out = []
    for job in jobs:
        metric_name, maximize = job_metric(job)
        trials = sum(counts[job.id].values())
        checkpoint = checkpoints.get(job.id)
        model = models.get(job.latency_model_id) if job.latency_model_id is not None else None
        out.append(JobOut(
            job_id=job.id, name=job.name, state=job.state, created_by=job.created_by, space=job.space,
            device=job.device, latency_target_ms=job.latency_target_ms, strategy=job.strategy,
            trials_budget=job.trials_budget, trials=trials, trial_states=counts[job.id],
            progress=min(1.0, trials / max(1, job.trials_budget)), cancel_requested=bool(job.cancel_requested),
            message=job.message, metric_name=metric_name, maximize_metric=maximize,
            created_at=isoformat(job.created_at), started_at=isoformat(job.started_at),
            finished_at=isoformat(job.finished_at), hypervolume=hypervolumes.get(job.id),
            checkpoint=checkpoint_view(checkpoint[0], trial_number=checkpoint[1]) if checkpoint else None,
            data=job.data_info, baseline=job.baseline.to_dict() if job.baseline else None,
            latency_model=latency_model_view(model) if model is not None else None, spec=job.spec))
    return out


def checkpoint_view(row: CheckpointRecord, *, trial_number: int) -> CheckpointOut:
    """A stored checkpoint as the CLI and the API show it, with its download link."""
    archive_name = Path(row.archive_path).name
    return CheckpointOut(id=row.id, trial=trial_number, path=row.path, archive=row.archive_path,
                         archive_name=archive_name, sha256=row.sha256, size_bytes=row.size_bytes,
                         measured_latency_ms=row.measured_latency_ms, created_at=isoformat(row.created_at),
                         download_url=f"/api/v1/jobs/{row.job_id}/checkpoints/{archive_name}")


def front_members(storage: Storage, job_id: int, *, job: JobRecord | None = None) -> list[FrontMemberOut]:
    """The job's front, fastest first, each member with its checkpoint when one was exported."""
    from search_spaces.base import space_class

    job = job or storage.get_job(job_id)
    describe = space_class(job.space).describe
    checkpoints = {c.trial_id: c for c in storage.checkpoints(job_id)}
    members = []
    for member in storage.front(job_id):
        t = member.trial
        checkpoint = checkpoints.get(t.id)
        members.append(FrontMemberOut(
            trial=t.number, metric=member.metric, latency_ms=member.latency_ms, arch_text=describe(t.arch["config"]),
            predicted_latency_ms=t.predicted_latency_ms, predicted_latency_std_ms=t.predicted_latency_std_ms,
            measured_latency_ms=t.measured_latency_ms, params=t.params, metrics=t.metrics, arch=t.arch["config"],
            trained_steps=t.steps_done,
            arch_hash=t.arch_hash, under_target=member.latency_ms <= job.latency_target_ms,
            checkpoint=checkpoint_view(checkpoint, trial_number=t.number) if checkpoint else None))
    return members


def front_view(storage: Storage, job_id: int) -> FrontOut:
    """The front with what reading it needs (target, metric, direction, hypervolume): the API's answer and
    what `hwnas pareto` prints, locally or from a server."""
    job = storage.get_job(job_id)
    metric_name, maximize = job_metric(job)
    history = storage.hypervolume_history(job_id, last=1)
    return FrontOut(job_id=job_id, latency_target_ms=job.latency_target_ms, metric_name=metric_name,
                    maximize_metric=maximize, hypervolume=history[-1].hypervolume if history else None,
                    members=front_members(storage, job_id, job=job))


def trial_view(t: TrialRecord, *, describe: Callable[[dict[str, Any]], str]) -> TrialOut:
    return TrialOut(trial=t.number, state=t.state, arch=t.arch["config"], arch_hash=t.arch_hash,
                    arch_text=describe(t.arch["config"]), metric=t.metric, metrics=t.metrics, latency_ms=t.latency_ms,
                    predicted_latency_ms=t.predicted_latency_ms, predicted_latency_std_ms=t.predicted_latency_std_ms,
                    measured_latency_ms=t.measured_latency_ms, params=t.params, worker=t.worker, attempts=t.attempts,
                    steps_done=t.steps_done, rungs=t.rungs, error=(t.error or "").splitlines()[0] if t.error else None,
                    started_at=isoformat(t.started_at), finished_at=isoformat(t.finished_at))


def trial_views(storage: Storage, job_id: int) -> list[TrialOut]:
    from search_spaces.base import space_class

    describe = space_class(storage.get_job(job_id).space).describe
    return [trial_view(t, describe=describe) for t in storage.trials(job_id)]


def best_front_member(storage: Storage, job_id: int, *, max_latency_ms: float | None) -> FrontMemberOut:
    """The best front member at most `max_latency_ms` (default: the job's target). ConflictError if none: the
    job exists, and its front (its state, not the address asked) holds nothing that fast yet."""
    job = storage.get_job(job_id)
    limit = job.latency_target_ms if max_latency_ms is None else max_latency_ms
    members = front_members(storage, job_id, job=job)
    _, maximize = job_metric(job)
    best = best_under([Point(m.trial, m.metric, m.latency_ms) for m in members], max_latency_ms=limit,
                      maximize_metric=maximize)
    if best is None:
        fastest = f"; its fastest member takes {members[0].latency_ms:.3f} ms" if members else " (its front is empty)"
        raise ConflictError(f"job {job_id} has no trained trial at or under {limit} ms{fastest}; "
                            "raise max_latency_ms")
    return next(m for m in members if m.trial == best.key)


def export_job_trial(storage: Storage, job_id: int, *, trial_number: int | None, out_dir: Path,
                     max_latency_ms: float | None = None, store: ArtifactStore | None = None) -> CheckpointOut:
    """Export a trial (default: the best front member under `max_latency_ms`, else the job's target) to `out_dir`."""
    from nas.engine.bound_job import bind_job
    from nas.engine.checkpoints import export_and_record

    if trial_number is None:
        trial_number = best_front_member(storage, job_id, max_latency_ms=max_latency_ms).trial
    trial = storage.trial(job_id, trial_number)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SpecError(f"--out: {str(out_dir)!r} exists and is not empty; give a new or empty folder")
    row = export_and_record(storage, bind_job(storage, storage.get_job(job_id), store=store), trial=trial,
                            latency_ms=trial.latency_ms or 0.0, out_dir=out_dir, store=store)
    return checkpoint_view(row, trial_number=trial.number)


def checkpoint_for_trial(storage: Storage, settings: Settings, job_id: int, *, trial_number: int | None,
                         max_latency_ms: float | None) -> tuple[CheckpointOut, bool]:
    """The trial's checkpoint, exported into the job's artifacts on first request. Returns (checkpoint, created)."""
    from nas.engine.bound_job import bind_job
    from nas.engine.checkpoints import checkpoint_dir, existing_checkpoint, export_once

    if trial_number is None:
        trial_number = best_front_member(storage, job_id, max_latency_ms=max_latency_ms).trial
    trial = storage.trial(job_id, trial_number)
    store = settings.artifact_store()
    row = existing_checkpoint(storage, job_id, trial.id, store=store)
    created = False
    if row is None:  # bind the job (build its task and space) only when there is something to export
        row, created = export_once(storage, bind_job(storage, storage.get_job(job_id), store=store), trial=trial,
                                   latency_ms=trial.latency_ms or 0.0,
                                   out_dir=checkpoint_dir(settings.artifacts_dir, job_id, trial.number),
                                   store=store)
    return checkpoint_view(row, trial_number=trial.number), created
