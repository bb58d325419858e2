"""Faults on a real local cluster: a Ray head, `hwnas worker` nodes, `hwnas controller` processes, PostgreSQL.

Each test runs one job (tiny sparse transformers trained for real) and kills something mid-job: a worker
node, a controller, the PostgreSQL server. Each run must end with the job completed and exactly its
budget of trials: numbers 0..N-1 once each, none left pending or running, each told to Optuna once.
The first job profiles the device on the node that advertises it; the others reuse its latency model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_MEASURING_ENV, TINY_SPACE_OPTIONS, temporary_postgres_database
from tests.local_cluster import LocalCluster, Process

pytestmark = [pytest.mark.cluster, pytest.mark.ray, pytest.mark.slow, pytest.mark.postgres]

TRIALS = 8


@pytest.fixture(scope="module")
def cluster_db(postgres_server: str) -> Iterator[str]:
    """One PostgreSQL database for the module (the latency model profiled by the first job is reused)."""
    with temporary_postgres_database("hwnas_cluster") as url:
        yield url


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A Ray head (no CPUs) and a worker node with 1 CPU; tests add and kill nodes of their own."""
    local = LocalCluster().start()
    local.add_worker(cpus=1)
    try:
        yield local
    finally:
        local.shutdown()


@pytest.fixture()
def env(cluster_db: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("cluster-data")
    return {**FAST_MEASURING_ENV, "HWNAS_DATABASE_URL": cluster_db, "HWNAS_DATA_DIR": str(data),
            "HWNAS_LEASE_TTL_S": "4", "HWNAS_RUNNER_POLL_S": "0.5", "HWNAS_MAX_PARALLEL_TRIALS": "2"}


def submit(url: str, corpus: Path, **budget: Any) -> int:
    from nas.db.storage import open_storage
    from nas.service import submit_job
    from nas.spec import parse_spec

    spec = parse_spec({"space": "sparse-transformer", "space_options": TINY_SPACE_OPTIONS, "device": "cpu-1t",
                       "task": {"kind": "language-modeling", "train": str(corpus), "seq_len": 16},
                       "latency_target_ms": 1000.0, "budget": {"trials": TRIALS, "train_steps": 600, **budget},
                       "seed": 3, "search": {"mode": "standalone"}})
    return submit_job(open_storage(url), spec)


def poll(url: str, job_id: int, until: Callable[[dict[str, int], str], bool], *, timeout_s: float,
         watch: list[Process]) -> None:
    """Poll the job's trial states (through database outages) until `until(counts, job_state)` holds."""
    from nas.db.storage import open_storage
    from nas.errors import StorageError

    storage = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            storage = storage or open_storage(url)
            if until(storage.trial_state_counts(job_id), storage.get_job(job_id).state):
                return
        except StorageError:
            storage = None
        for process in watch:
            assert process.popen.poll() is None, f"{process.name} exited:\n{process.output[-3000:]}"
        time.sleep(0.3)
    logs = "\n".join(p.output[-3000:] for p in watch)
    raise AssertionError(f"job {job_id}: condition not met in {timeout_s} s\n{logs}")


def exit_code(process: Process, *, timeout_s: float) -> int:
    try:
        return process.popen.wait(timeout=timeout_s)
    except Exception:
        process.kill()
        raise AssertionError(f"{process.name} did not exit in {timeout_s} s:\n{process.output[-4000:]}") from None


def finished(counts: dict[str, int]) -> int:
    return sum(n for state, n in counts.items() if state not in ("pending", "running"))


def assert_full_budget_once(url: str, job_id: int) -> list[Any]:
    """Completed, TRIALS trials numbered 0..N-1, none unfinished; Optuna holds each exactly once, finished."""
    import optuna

    from nas.db.storage import open_storage

    storage = open_storage(url)
    job = storage.get_job(job_id)
    assert job.state == "completed", job.message
    trials = storage.trials(job_id)
    assert [t.number for t in trials] == list(range(TRIALS))
    assert all(t.state in ("complete", "infeasible", "failed", "stopped") for t in trials), \
        [(t.number, t.state) for t in trials]
    study = optuna.load_study(study_name=job.study_name, storage=url)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    ours = [t.optuna_number for t in trials]
    assert len(set(ours)) == len(ours)
    assert all(by_number[n].state.is_finished() for n in ours)
    assert not [t for t in by_number.values() if not t.state.is_finished()]
    return trials


def test_a_killed_worker_node_is_retried_on_another(cluster: LocalCluster, env: dict[str, str],
                                                    cluster_db: str, corpus_file: Path) -> None:
    node = cluster.add_worker(cpus=1, device="cpu-1t")  # the device node: profiling runs there
    job_id = submit(cluster_db, corpus_file)
    controller = cluster.start_controller(env, "--exit-when-idle")
    # Two slots, two 1-CPU nodes: once trials are under way, kill the node while it trains one.
    poll(cluster_db, job_id, lambda c, s: finished(c) >= 1, timeout_s=240, watch=[controller])
    deadline = time.monotonic() + 120
    while not node.runs_task("evaluate_candidate"):
        assert time.monotonic() < deadline, "the device node never trained a candidate"
        time.sleep(0.05)
    node.kill()
    assert exit_code(controller, timeout_s=300) == 0, controller.output[-3000:]
    trials = assert_full_budget_once(cluster_db, job_id)
    retried = [t for t in trials if t.attempts > 1]
    assert retried, [(t.number, t.attempts, t.worker) for t in trials]
    for trial in retried:
        assert trial.state == "complete", trial.error
        assert f"node-{node.node_id[:8]}" not in (trial.worker or "")  # it finished elsewhere
    assert "worker lost" in controller.output


def test_a_killed_controller_is_taken_over_after_its_lease(cluster: LocalCluster, env: dict[str, str],
                                                           cluster_db: str, corpus_file: Path) -> None:
    job_id = submit(cluster_db, corpus_file)
    first = cluster.start_controller(env)
    poll(cluster_db, job_id, lambda c, s: finished(c) >= 3 and c.get("running", 0) >= 1, timeout_s=240,
         watch=[first])
    first.kill()  # SIGKILL: no lease released, Ray kills the tasks it owned
    second = cluster.start_controller(env, "--exit-when-idle")
    assert exit_code(second, timeout_s=300) == 0, second.output[-3000:]
    trials = assert_full_budget_once(cluster_db, job_id)
    assert sum(t.attempts for t in trials if t.state == "complete") > len([t for t in trials if t.state == "complete"])


def _pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, *(
        ["-m", "fast"] if action == "stop" else [])], check=True, timeout=120)


@pytest.mark.skipif(shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir()
                    or os.geteuid() != 0, reason="restarting PostgreSQL needs pg_ctlcluster and root")
def test_the_controller_waits_out_a_postgresql_restart(cluster: LocalCluster, env: dict[str, str],
                                                       cluster_db: str, corpus_file: Path) -> None:
    job_id = submit(cluster_db, corpus_file)
    controller = cluster.start_controller({**env, "HWNAS_LEASE_TTL_S": "30"}, "--exit-when-idle")
    poll(cluster_db, job_id, lambda c, s: finished(c) >= 2 and c.get("running", 0) >= 1, timeout_s=240,
         watch=[controller])
    _pg_ctl("stop")
    try:
        time.sleep(4)  # trials finish while the database is away
    finally:
        _pg_ctl("start")
    assert exit_code(controller, timeout_s=300) == 0, controller.output[-3000:]
    assert "database unavailable" in controller.output
    assert_full_budget_once(cluster_db, job_id)
