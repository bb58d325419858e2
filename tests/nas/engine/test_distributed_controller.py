"""Concurrency, retries and early stopping in the controller, with an instant pool of fake workers."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nas.engine.controller import Controller
from nas.db.storage import Storage, open_storage
from nas.service import submit_job
from nas.settings import Settings
from search_spaces.arch import Arch
from search_spaces.errors import ConflictError, SpecError
from tests.conftest import REPO_ROOT
from tests.fakes import FakeDeviceRunner, PoolExecutor, fake_metric, feature_sum_factory, make_fake_evaluate
from tests.nas.engine.test_controller import make_spec
from workers.types import CandidateTask, EvalResult


def controller(storage: Storage, tmp_path: Path, executor: PoolExecutor, **settings: Any) -> Controller:
    return Controller(storage, Settings(data_dir=tmp_path / "data", executor="in-process", lease_ttl_s=5, **settings),
                      executor_factory=lambda: executor, latency_model_factory=feature_sum_factory,
                      device_runner=FakeDeviceRunner())


def budget_once(storage: Storage, job_id: int, trials: int) -> list[Any]:
    rows = storage.trials(job_id)
    assert [t.number for t in rows] == list(range(trials))
    assert len({t.optuna_number for t in rows}) == trials
    assert not [t for t in rows if t.state in ("pending", "running")]
    return rows


def test_a_job_never_runs_more_than_its_parallel_limit(database_url: str, tmp_path: Path, corpus_file: Path) -> None:
    storage = open_storage(database_url)
    pool = PoolExecutor(make_fake_evaluate([]), slots=8)
    spec = make_spec(corpus_file, latency_target_ms=100.0, budget={"trials": 12, "train_steps": 2, "parallel_trials": 3})
    job_id = submit_job(storage, spec)
    batches: list[int] = []
    add_trials = storage.add_trials
    storage.add_trials = lambda **kw: batches.append(len(kw["proposals"])) or add_trials(**kw)  # type: ignore[method-assign]
    assert controller(storage, tmp_path, pool).run_job(job_id).state == "completed"
    assert pool.max_in_flight == 3
    assert batches[0] == 3  # the strategy was asked for the free slots at once, stored in one transaction
    budget_once(storage, job_id, 12)


def test_jobs_share_the_cluster_fairly(sqlite_url: str, tmp_path: Path, corpus_file: Path) -> None:
    storage = open_storage(sqlite_url)
    other = submit_job(storage, make_spec(corpus_file))
    assert storage.claim_job(other, owner="another-controller", ttl_s=600)  # a job running elsewhere
    pool = PoolExecutor(make_fake_evaluate([]), slots=8)
    job_id = submit_job(storage, make_spec(corpus_file, latency_target_ms=100.0))
    assert controller(storage, tmp_path, pool).run_job(job_id).state == "completed"
    assert pool.max_in_flight == 4  # half of the 8 slots: two jobs run
    budget_once(storage, job_id, 12)


def test_a_lost_worker_is_retried_up_to_the_limit_then_failed(database_url: str, tmp_path: Path,
                                                              corpus_file: Path) -> None:
    storage = open_storage(database_url)
    pool = PoolExecutor(make_fake_evaluate([]), slots=2,
                        lose=lambda c: c.trial_number == 5 or (c.trial_number == 2 and c.attempt == 1))
    job_id = submit_job(storage, make_spec(corpus_file, latency_target_ms=100.0))
    job = controller(storage, tmp_path, pool, trial_max_attempts=3).run_job(job_id)
    assert job.state == "completed", job.message
    rows = {t.number: t for t in budget_once(storage, job_id, 12)}
    assert rows[2].state == "complete" and rows[2].attempts == 2 and rows[2].error is None
    assert rows[5].state == "failed" and rows[5].attempts == 3
    assert "lost its worker 3 times" in (rows[5].error or "") and "NodeDiedError" in (rows[5].error or "")
    assert [c.attempt for c in pool.submitted if c.trial_number == 5] == [1, 2, 3]


def steps_evaluate(calls: list[tuple[int, int, int]]) -> Any:
    """A fake evaluation whose bits per char fall with the steps trained, keeping each arch's order."""
    base = make_fake_evaluate([])

    def evaluate(candidate: CandidateTask) -> EvalResult:
        from workers.evaluate import rung_files

        calls.append((candidate.trial_number, candidate.steps_before, candidate.train_steps))
        assert candidate.schedule_steps == 90
        if candidate.steps_before:  # the previous rung's files are still there to continue from
            assert candidate.resume_from and all(p.is_file() for p in rung_files(candidate.resume_from,
                                                                                  candidate.steps_before))
        result = base(candidate)
        metric = fake_metric(Arch.from_dict(candidate.arch)) * (1 + 10 / candidate.train_steps)
        weights = Path(result.weights_path or "")
        if candidate.train_steps < candidate.schedule_steps:  # a rung's files, named as the real evaluation does
            weights = weights.rename(weights.with_name(f"weights-step{candidate.train_steps}.safetensors"))
            rung_files(str(weights), candidate.train_steps)[1].write_bytes(b"state")
        return dataclasses.replace(result, metric=metric, steps_done=candidate.train_steps, weights_path=str(weights))

    return evaluate


def test_early_stopping_stops_poor_trials_at_their_rung(database_url: str, tmp_path: Path,
                                                        corpus_file: Path) -> None:
    import optuna

    storage = open_storage(database_url)
    calls: list[tuple[int, int, int]] = []
    pool = PoolExecutor(steps_evaluate(calls), slots=2)
    spec = make_spec(corpus_file, latency_target_ms=100.0,
                     budget={"trials": 18, "train_steps": 90, "min_train_steps": 10, "reduction_factor": 3})
    job_id = submit_job(storage, spec)
    assert controller(storage, tmp_path, pool).run_job(job_id).state == "completed"
    rows = budget_once(storage, job_id, 18)
    stopped = [t for t in rows if t.state == "stopped"]
    complete = [t for t in rows if t.state == "complete"]
    assert stopped and complete
    for t in stopped:
        assert t.steps_done in (10, 30) and t.rungs and t.rungs[-1]["steps"] == t.steps_done
        assert "stopped early at" in (t.error or "")
    for t in complete:
        assert t.steps_done == 90 and [r["steps"] for r in t.rungs] == [10, 30, 90]
    # Each dispatch continued from where the trial stopped: rungs 0-10, 10-30, 30-90.
    assert {(before, after) for _, before, after in calls} <= {(0, 10), (10, 30), (30, 90)}
    spent = sum(after - before for _, before, after in calls)
    assert spent < 18 * 90 * 0.6
    # The front holds full-budget trials only; Optuna holds the stopped ones as pruned.
    assert {m.trial.id for m in storage.front(job_id)} <= {t.id for t in complete}
    study = optuna.load_study(study_name=storage.get_job(job_id).study_name, storage=database_url)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert all(states[t.optuna_number] == optuna.trial.TrialState.PRUNED for t in stopped)
    # The best trial at the first rung always went on.
    first = min(rows, key=lambda t: t.rungs[0]["metric"])
    assert first.steps_done > 10
    # Only the files of each trial's last rung are left (earlier rungs' go once the next one is recorded).
    for t in rows:
        from workers.evaluate import rung_files

        kept = {p.name for p in Path(t.weights_path).parent.iterdir()}
        assert kept == ({"weights.safetensors"} if t.state == "complete" else
                        {p.name for p in rung_files(t.weights_path, t.steps_done)}), (t.number, kept)


def test_min_train_steps_must_be_below_train_steps(corpus_file: Path) -> None:
    with pytest.raises(SpecError) as info:
        make_spec(corpus_file, budget={"trials": 4, "train_steps": 50, "min_train_steps": 50})
    assert "budget.min_train_steps must be below budget.train_steps (50), got 50" in str(info.value)


def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    from nas.cli.process_guards import hold_controller_lock

    url = f"sqlite:///{tmp_path / 'hwnas.db'}"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from nas.cli.process_guards import "
                               f"hold_controller_lock as h; h({url!r}, role='hwnas serve'); print('held', flush=True); "
                               "time.sleep(60)"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConflictError) as info:
            hold_controller_lock(url, role="test")
        assert f"pid {holder.pid}, hwnas serve" in str(info.value) and "PostgreSQL" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    hold_controller_lock(url, role="test")  # free once the holder is gone
    # `hwnas controller` refuses SQLite outright, before touching it.
    done = subprocess.run([str(Path(sys.executable).parent / "hwnas"), "controller"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={**os.environ, "HWNAS_DATA_DIR": str(tmp_path / "other")}, timeout=120)
    assert done.returncode == 4 and "HWNAS_DATABASE_URL" in done.stderr
    assert not (tmp_path / "other" / "hwnas.db").exists()
