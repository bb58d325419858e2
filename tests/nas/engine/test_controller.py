from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from nas.db.models import JobRow
from nas.engine.controller import Controller
from nas.db.storage import Storage, open_storage
from nas.service import submit_job
from nas.settings import Settings
from nas.spec import parse_spec
from search_spaces.arch import Arch
from search_spaces.base import get_space
from search_spaces.errors import ConflictError
from tests.conftest import FAST_MEASURING_ENV, REPO_ROOT, TINY_SPACE_OPTIONS, fast_settings
from tests.fakes import FakeDeviceRunner, FeatureSumLatencyModel, fake_latency_ms, feature_sum_factory, make_fake_evaluate
from tests.nas.engine.test_pareto import brute_force_front
from nas.engine.pareto import Point
from workers.executors.in_process import InProcessExecutor


def make_spec(corpus: Path, **changes: Any) -> Any:
    data = {"space": "sparse-transformer", "space_options": TINY_SPACE_OPTIONS,
            "task": {"kind": "language-modeling", "train": str(corpus), "seq_len": 16, "batch_size": 4},
            "latency_target_ms": 0.3, "strategy": "nsga2", "budget": {"trials": 12, "train_steps": 2}, "seed": 0,
            "search": {"mode": "standalone"}}
    data.update(changes)
    return parse_spec(data)


def run(storage: Storage, tmp_path: Path, spec: Any, calls: list[int], **kwargs: Any) -> tuple[int, Any]:
    settings = Settings(data_dir=tmp_path / "data", executor="in-process", lease_ttl_s=5)
    evaluate = kwargs.pop("evaluate", None) or make_fake_evaluate(calls)
    kwargs.setdefault("latency_model_factory", feature_sum_factory)
    kwargs.setdefault("device_runner", FakeDeviceRunner())
    controller = Controller(storage, settings, executor_factory=lambda: InProcessExecutor(evaluate=evaluate), **kwargs)
    job_id = submit_job(storage, spec)
    return job_id, controller.run_job(job_id)


def test_submitting_to_an_unknown_device_stores_nothing(sqlite_url: str, corpus_file: Path) -> None:
    from nas.errors import api_message, cli_message
    from search_spaces.errors import NotFoundError

    storage = open_storage(sqlite_url)
    with pytest.raises(NotFoundError, match="device profile 'tpu-v9' does not exist") as refused:
        submit_job(storage, make_spec(corpus_file, device="tpu-v9"))
    assert storage.list_jobs() == []
    # storage says what is missing; each interface says how to find or add what exists
    assert cli_message(refused.value).endswith("add it with `hwnas devices add`")
    assert api_message(refused.value).endswith("add it with POST /api/v1/devices")


def test_front_constraint_and_export(database_url: str, tmp_path: Path, corpus_file: Path) -> None:
    storage = open_storage(database_url)
    calls: list[int] = []
    job_id, job = run(storage, tmp_path, make_spec(corpus_file), calls)
    assert job.state == "completed", job.message
    trials = storage.trials(job_id)
    assert [t.number for t in trials] == list(range(12))
    space = get_space("sparse-transformer", {**TINY_SPACE_OPTIONS, "vocab_size": 259})
    infeasible = [t for t in trials if t.state == "infeasible"]
    complete = [t for t in trials if t.state == "complete"]
    assert infeasible and complete, "the target should split this space"
    for t in infeasible:  # over the target: never trained
        assert fake_latency_ms(space, Arch.from_dict(t.arch)) > 0.3 and t.number not in calls
    assert sorted(calls) == sorted(t.number for t in complete)

    stored = {m.trial.number for m in storage.front(job_id)}
    points = [Point(t.number, t.metric, t.predicted_latency_ms) for t in complete]
    assert stored == brute_force_front(points, maximize=False)
    assert len(storage.hypervolume_history(job_id)) >= len(complete)

    (checkpoint,) = storage.checkpoints(job_id)
    assert checkpoint.measured_latency_ms is not None and checkpoint.measured_latency_ms <= 0.3
    best = min((t for t in complete if t.predicted_latency_ms <= 0.3), key=lambda t: t.metric)
    assert Path(checkpoint.path).name == f"checkpoint-trial-{best.number}"
    assert len(checkpoint.sha256) == 64 and Path(checkpoint.archive_path).is_file()

    import optuna

    study = optuna.load_study(study_name=job.study_name, storage=storage.url)
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(told) == 12  # the others are proposals that repeated an arch, told failed and asked again
    assert all(t.state == optuna.trial.TrialState.FAIL for t in study.trials if t not in told)


def test_front_and_hypervolume_follow_every_complete_trial(database_url: str, tmp_path: Path,
                                                          corpus_file: Path) -> None:
    """The controller updates the front incrementally; after each complete trial the stored front and the
    last hypervolume equal what a recomputation from every complete trial so far gives."""
    from nas.engine.pareto import hypervolume
    from workers.evaluate import task_and_space

    storage = open_storage(database_url)
    spec = make_spec(corpus_file, budget={"trials": 24, "train_steps": 2}, latency_target_ms=1.5)
    task, _ = task_and_space(spec.space, spec.space_options, spec.task)
    task.describe_data()
    reference = (task.worst_metric(), spec.latency_target_ms)
    checked: list[int] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind != "trial" or data["state"] != "complete":
            return
        job_id = storage.list_jobs()[0].id
        points = [Point(t.id, t.metric, t.predicted_latency_ms) for t in storage.trials(job_id, states=("complete",))]
        assert {m.trial.id for m in storage.front(job_id)} == brute_force_front(points, maximize=False)
        (last,) = storage.hypervolume_history(job_id, last=1)
        assert last.hypervolume == pytest.approx(hypervolume(points, reference=reference))
        checked.append(data["number"])

    job_id, job = run(storage, tmp_path, spec, [], on_event=on_event)
    assert job.state == "completed", job.message
    assert len(checked) == len(storage.trials(job_id, states=("complete",))) >= 5
    assert len({h.hypervolume for h in storage.hypervolume_history(job_id)}) > 1


def test_impossible_target_ends_clearly_without_training(tmp_path: Path, corpus_file: Path, sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    calls: list[int] = []
    job_id, job = run(storage, tmp_path, make_spec(corpus_file, latency_target_ms=0.001), calls)
    assert job.state == "completed"
    assert "no trial met the latency target of 0.001 ms" in job.message
    assert calls == [] and storage.checkpoints(job_id) == []
    assert {t.state for t in storage.trials(job_id)} == {"infeasible"}


@pytest.mark.parametrize("strategy", ["nsga2", "tpe", "random"])
def test_failed_nan_and_inf_candidates_never_kill_the_job(strategy: str, tmp_path: Path, corpus_file: Path,
                                                          sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    calls: list[int] = []
    base = make_fake_evaluate(calls, fail=lambda c: "RuntimeError: boom" if c.trial_number % 3 == 0 else None)
    diverged = {1: math.nan, 2: math.inf, 4: -math.inf}

    def evaluate(candidate: Any) -> Any:
        result = base(candidate)
        if candidate.trial_number in diverged:
            return dataclasses.replace(result, metric=diverged[candidate.trial_number])
        return result

    job_id, job = run(storage, tmp_path, make_spec(corpus_file, latency_target_ms=100.0, strategy=strategy), calls,
                      evaluate=evaluate)
    assert job.state == "completed"
    trials = storage.trials(job_id)
    assert len(trials) == 12
    failed = [t for t in trials if t.state == "failed"]
    assert any("boom" in (t.error or "") for t in failed)
    errors = {t.number: t.error or "" for t in failed}
    assert "metric is nan" in errors[1] and "metric is inf" in errors[2] and "metric is -inf" in errors[4]
    assert [t.state for t in trials if t.number in (5, 7)] == ["complete", "complete"]
    assert all(t.metric is None or math.isfinite(t.metric) for t in trials)


def test_cancel_stops_within_one_trial(tmp_path: Path, corpus_file: Path, sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    calls: list[int] = []
    job_ids: list[int] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if data["state"] == "complete" and not job_ids:
            job_ids.append(1)
            storage.request_cancel(storage.list_jobs()[0].id)

    job_id, job = run(storage, tmp_path, make_spec(corpus_file, latency_target_ms=100.0), calls, on_event=on_event)
    assert job.state == "cancelled"
    assert storage.count_trials(job_id) == 1
    assert storage.checkpoints(job_id) == []


def test_cancel_of_queued_and_finished_jobs(tmp_path: Path, corpus_file: Path, sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    job_id = submit_job(storage, make_spec(corpus_file))
    assert storage.request_cancel(job_id) == "cancelled"
    with pytest.raises(ConflictError, match="already cancelled"):
        storage.request_cancel(job_id)


@pytest.mark.parametrize("strategy", ["nsga2", "tpe", "random"])
def test_same_seed_same_arch_sequence(strategy: str, tmp_path: Path, corpus_file: Path, sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    sequences = []
    for seed in (4, 4, 5):
        job_id, job = run(storage, tmp_path, make_spec(corpus_file, strategy=strategy, seed=seed,
                                                       latency_target_ms=100.0), [])
        assert job.state == "completed"
        sequences.append([t.arch_hash for t in storage.trials(job_id)])
    assert sequences[0] == sequences[1]
    assert sequences[0] != sequences[2]


def test_a_live_lease_is_respected_and_a_stale_one_taken_over(tmp_path: Path, corpus_file: Path,
                                                               sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    job_id = submit_job(storage, make_spec(corpus_file))
    assert storage.claim_job(job_id, owner="first", ttl_s=60)
    assert not storage.claim_job(job_id, owner="second", ttl_s=60)
    settings = Settings(data_dir=tmp_path / "data", executor="in-process")
    with pytest.raises(ConflictError, match="being run by first"):
        Controller(storage, settings, executor_factory=InProcessExecutor).run_job(job_id)
    with storage.session() as s:  # the first controller's lease runs out
        s.execute(update(JobRow).where(JobRow.id == job_id).values(lease_expires_at=time.time() - 1))
    assert storage.claim_job(job_id, owner="second", ttl_s=60)
    assert not storage.renew_lease(job_id, owner="first", ttl_s=60)


@pytest.mark.slow
def test_resume_after_killed_process_runs_exactly_the_budget(tmp_path: Path, corpus_file: Path) -> None:
    """A real `hwnas search` process is killed mid-job; resuming completes exactly the budget."""
    import optuna

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"space: sparse-transformer\nspace_options: {dict(TINY_SPACE_OPTIONS)}\n"
        f"task: {{kind: language-modeling, train: {corpus_file}, seq_len: 16, batch_size: 4}}\n"
        "latency_target_ms: 50\nbudget: {trials: 8, train_steps: 40}\nseed: 0\nsearch: {mode: standalone}\n")
    env = {**os.environ, "HWNAS_DATA_DIR": str(tmp_path / "data"), "HWNAS_EXECUTOR": "in-process",
           "HWNAS_LEASE_TTL_S": "2", **FAST_MEASURING_ENV}
    process = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", "--spec", str(spec)], env=env,
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    settings = fast_settings(data_dir=tmp_path / "data", executor="in-process", lease_ttl_s=2)
    storage = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if process.poll() is not None:
            pytest.fail(f"the search ended before it was killed: {process.stderr.read().decode()[-2000:]}")
        if (tmp_path / "data" / "hwnas.db").exists():
            storage = storage or open_storage(settings.resolved_database_url)
            if len(storage.trials(1, states=("complete",))) >= 3:
                break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert storage is not None
    killed_at = storage.count_trials(1)
    assert 3 <= killed_at <= 8 and storage.get_job(1).state == "running"

    time.sleep(2.5)  # let the dead process's lease expire
    job = Controller(storage, settings, executor_factory=InProcessExecutor).run_job(1)
    assert job.state == "completed", job.message
    trials = storage.trials(1)
    assert [t.number for t in trials] == list(range(8))
    assert all(t.state in ("complete", "infeasible") for t in trials)
    study = optuna.load_study(study_name=job.study_name, storage=storage.url)
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.number for t in told) == sorted(t.optuna_number for t in trials)
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


def test_every_final_front_member_is_remeasured(tmp_path: Path, corpus_file: Path, sqlite_url: str) -> None:
    """Re-measurement can move other trials onto the front; they are re-measured in turn before export."""
    storage = open_storage(sqlite_url)
    runner = FakeDeviceRunner(factor=10.0)
    job_id, job = run(storage, tmp_path, make_spec(corpus_file, latency_target_ms=100.0), [], device_runner=runner)
    assert job.state == "completed", job.message
    remeasured = {s.trial_id for s in storage.latency_samples(job_id=job_id) if s.purpose == "front-remeasure"}
    front = storage.front(job_id)
    assert front and {m.trial.id for m in front} <= remeasured
    for member in front:  # the stored front holds both figures; the front is ranked by the measured one
        trial = member.trial
        assert trial.measured_latency_ms == pytest.approx(10 * trial.predicted_latency_ms)
        assert member.latency_ms == trial.measured_latency_ms
    assert len(remeasured) > len(front)  # the first front was displaced and its successors re-measured too


def test_no_checkpoint_when_no_trial_measures_under_the_target(tmp_path: Path, corpus_file: Path,
                                                                sqlite_url: str) -> None:
    """Predicted under the target, measured over it: the job says so and exports nothing."""
    storage = open_storage(sqlite_url)
    job_id, job = run(storage, tmp_path, make_spec(corpus_file, latency_target_ms=100.0), [],
                      device_runner=FakeDeviceRunner(factor=1000.0))
    assert job.state == "completed"
    assert "no trial met the latency target of 100.0 ms when measured" in (job.message or "")
    assert storage.checkpoints(job_id) == []
    assert all(m.trial.measured_latency_ms > 100.0 for m in storage.front(job_id))


def test_export_uses_the_measured_latency_under_the_target(tmp_path: Path, corpus_file: Path,
                                                           sqlite_url: str) -> None:
    """Measured 2x slower than predicted: the exported trial is the best whose measured latency meets the target."""
    storage = open_storage(sqlite_url)
    spec = make_spec(corpus_file, latency_target_ms=0.3)
    job_id, job = run(storage, tmp_path, spec, [], device_runner=FakeDeviceRunner(factor=2.0))
    assert job.state == "completed", job.message
    [checkpoint] = storage.checkpoints(job_id)
    assert checkpoint.measured_latency_ms is not None and checkpoint.measured_latency_ms <= 0.3
    exported = next(t for t in storage.trials(job_id) if t.id == checkpoint.trial_id)
    under = [m.trial for m in storage.front(job_id) if m.trial.measured_latency_ms <= 0.3]
    assert exported.metric == max(t.metric for t in under)


def test_predicted_over_target_beyond_uncertainty_is_never_trained(tmp_path: Path, corpus_file: Path,
                                                                   sqlite_url: str) -> None:
    """Infeasible means `mean - std > target`: a candidate within its uncertainty above the target still trains."""
    storage = open_storage(sqlite_url)
    calls: list[int] = []
    std_ms = 0.1
    job_id, job = run(storage, tmp_path, make_spec(corpus_file, latency_target_ms=0.3), calls,
                      latency_model_factory=lambda space, device: FeatureSumLatencyModel(
                          space=space, device=device, std_ms=std_ms))
    assert job.state == "completed", job.message
    trials = storage.trials(job_id)
    for t in trials:
        assert t.predicted_latency_std_ms == std_ms
        if t.predicted_latency_ms - 0.3 > std_ms:
            assert t.state == "infeasible" and t.number not in calls and "uncertainty" in (t.error or "")
        else:
            assert t.state == "complete" and t.number in calls
    assert any(0 < t.predicted_latency_ms - 0.3 <= std_ms for t in trials), "no borderline candidate was proposed"
    assert any(t.state == "infeasible" for t in trials)


def test_a_tell_lost_in_a_crash_is_told_on_resume(tmp_path: Path, corpus_file: Path, sqlite_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies after a trial is recorded in our tables but before Optuna hears of it."""
    import optuna

    from nas.engine.strategies.optuna_strategies import OptunaStrategy

    original = OptunaStrategy.tell
    calls = {"n": 0}

    def dies_on_third_tell(self: Any, number: int, values: Any, *, constraint: float) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # stands in for a kill between the two writes
        original(self, number, values, constraint=constraint)

    monkeypatch.setattr(OptunaStrategy, "tell", dies_on_third_tell)
    storage = open_storage(sqlite_url)
    with pytest.raises(KeyboardInterrupt):
        run(storage, tmp_path, make_spec(corpus_file), [])
    monkeypatch.setattr(OptunaStrategy, "tell", original)
    lost = storage.trials(1)[-1]
    assert lost.state in ("complete", "infeasible") and storage.get_job(1).state == "queued"

    settings = Settings(data_dir=tmp_path / "data", executor="in-process", lease_ttl_s=5)
    job = Controller(storage, settings, executor_factory=lambda: InProcessExecutor(evaluate=make_fake_evaluate([])),
                     latency_model_factory=feature_sum_factory, device_runner=FakeDeviceRunner()).run_job(1)
    assert job.state == "completed", job.message
    trials = storage.trials(1)
    assert [t.number for t in trials] == list(range(12))
    study = optuna.load_study(study_name=job.study_name, storage=storage.url)
    told = {t.number: t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert sorted(told) == sorted(t.optuna_number for t in trials)
    if lost.state == "complete":
        assert told[lost.optuna_number].values[0] == lost.metric


def test_a_database_outage_while_recording_loses_nothing(tmp_path: Path, corpus_file: Path, database_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The database goes away between a result's row and its tell: the controller waits, reconciles (tells
    Optuna from the stored row, puts the trial on the stored front) and finishes with every trial once."""
    import optuna

    from nas.db.storage import Storage
    from nas.engine.pareto import pareto_front
    from nas.engine.strategies.optuna_strategies import OptunaStrategy
    from search_spaces.errors import DatabaseUnavailableError

    original = OptunaStrategy.tell
    tells = {"n": 0}

    def unavailable_once(self: Any, number: int, values: Any, *, constraint: float) -> None:
        tells["n"] += 1
        if tells["n"] == 1:
            raise DatabaseUnavailableError("database unavailable to the strategy: connection refused")
        original(self, number, values, constraint=constraint)

    waits: list[float] = []
    monkeypatch.setattr(OptunaStrategy, "tell", unavailable_once)
    monkeypatch.setattr(Storage, "wait_until_available", lambda self, *, timeout_s, poll_s=1.0: waits.append(timeout_s))
    storage = open_storage(database_url)
    fronts: list[bool] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "trial" and data["state"] == "complete" and waits:
            points = [Point(t.id, t.metric, t.predicted_latency_ms) for t in storage.trials(1, states=("complete",))]
            fronts.append({m.trial.id for m in storage.front(1)} == {p.key for p in pareto_front(points)})

    job_id, job = run(storage, tmp_path, make_spec(corpus_file, latency_target_ms=100.0), [], on_event=on_event)
    assert job.state == "completed", job.message
    assert len(waits) == 1 and fronts and all(fronts)
    trials = storage.trials(job_id)
    assert [t.number for t in trials] == list(range(12)) and {t.state for t in trials} == {"complete"}
    study = optuna.load_study(study_name=job.study_name, storage=storage.url)
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.number for t in told) == sorted(t.optuna_number for t in trials)
    assert all(t.state == optuna.trial.TrialState.FAIL for t in study.trials if t not in told)  # repeats


@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_a_job_spends_its_trials_on_archs_it_has_not_seen(strategy: str, tmp_path: Path, corpus_file: Path,
                                                          sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    calls: list[int] = []
    spec = make_spec(corpus_file, strategy=strategy, latency_target_ms=100.0, budget={"trials": 40, "train_steps": 2})
    job_id, job = run(storage, tmp_path, spec, calls)
    assert job.state == "completed"
    hashes = [t.arch_hash for t in storage.trials(job_id)]
    assert len(hashes) == 40 and len(set(hashes)) == 40  # no arch trained twice while new ones remain


def test_a_space_with_fewer_archs_than_the_budget_still_runs_its_budget(tmp_path: Path, corpus_file: Path,
                                                                       sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    options = {**TINY_SPACE_OPTIONS, "max_layers": 1, "min_layers": 1, "d_model_choices": [16], "heads_choices": [2],
               "ffn_kinds": ["dense"], "dense_width_choices": [16, 32]}  # two archs
    spec = make_spec(corpus_file, strategy="evolution", latency_target_ms=100.0, space_options=options,
                     budget={"trials": 5, "train_steps": 2})
    job_id, job = run(storage, tmp_path, spec, [])
    assert job.state == "completed"
    hashes = [t.arch_hash for t in storage.trials(job_id)]
    assert len(hashes) == 5 and len(set(hashes)) == 2


def test_a_one_shot_search_spends_its_trials_on_candidates_under_the_target(tmp_path: Path, corpus_file: Path,
                                                                          sqlite_url: str) -> None:
    """HAT's filter: a one-shot proposal predicted over the target is told to the strategy and not stored,
    so `budget.trials` counts candidates scored; standalone keeps recording them as infeasible trials."""
    import optuna

    storage = open_storage(sqlite_url)
    space = get_space("sparse-transformer", {**TINY_SPACE_OPTIONS, "vocab_size": 259})
    spec = make_spec(corpus_file, strategy="evolution", latency_target_ms=1.0, budget={"trials": 12, "train_steps": 2},
                     search={"mode": "one-shot", "supernet_steps": 2, "final_candidates": 1})
    job_id, job = run(storage, tmp_path, spec, [])
    assert job.state == "completed", job.message
    trials = storage.trials(job_id)
    assert len(trials) == 12 and all(t.state == "complete" for t in trials), [(t.state, t.error) for t in trials]
    assert all(fake_latency_ms(space, Arch.from_dict(t.arch)) <= 1.0 + 1e-9 for t in trials)  # 7% of this space
    study = optuna.load_study(study_name=job.study_name, storage=storage.url)
    discarded = [t for t in study.trials if t.number not in {x.optuna_number for x in trials}
                 and t.state == optuna.trial.TrialState.COMPLETE]
    assert discarded, "the target splits this space: some proposals were over it"
    assert f"{len(discarded)} proposals predicted over the target discarded" in job.message
    standalone_id, _ = run(storage, tmp_path, make_spec(corpus_file, strategy="evolution", latency_target_ms=1.0), [])
    assert any(t.state == "infeasible" for t in storage.trials(standalone_id))  # standalone: recorded as before
    # a target only 7 archs meet: the search scores what the strategy finds under it, then ends
    narrow_id, narrow = run(storage, tmp_path, make_spec(
        corpus_file, strategy="evolution", latency_target_ms=0.4, budget={"trials": 12, "train_steps": 2},
        search={"mode": "one-shot", "supernet_steps": 2, "final_candidates": 1}), [])
    assert narrow.state == "completed", narrow.message
    narrow_trials = storage.trials(narrow_id)
    assert 0 < len(narrow_trials) <= 7 and len({t.arch_hash for t in narrow_trials}) == len(narrow_trials)
    assert all(t.state == "complete" for t in narrow_trials) and "the search ended early" in narrow.message
