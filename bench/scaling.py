"""Issue 6's benchmark: how the controller scales, and what it costs per trial.

1. `inprocess`: one job of 1,000 trials with a negligible evaluation (a fake that builds the tiny model and
   saves its weights, no training) on the in-process executor, on SQLite and on PostgreSQL; wall time of
   the whole job (goal: under 2 minutes) and the controller's own time per trial (asking, predicting,
   writing, for every trial including those predicted infeasible; goal under 20 ms); wall time and the
   controller thread's CPU time; `--inprocess-repeats` runs per database, interleaved, medians.
2. `cluster`: trials per minute of one job on a local cluster (Ray head with no CPUs, `hwnas worker`
   nodes of 1 CPU each, an `hwnas controller` process, PostgreSQL), with 1 and with 2 worker nodes,
   interleaved over `--rounds` rounds; each job trains `--trials` tiny sparse transformers for
   `--train-steps` steps. A warm-up job first profiles the device (not timed). Then the controller's
   own time per trial with a cheap candidate budget: three jobs of `--overhead-trials` trials of one
   training step on 2 nodes.

    python bench/scaling.py                       # both; JSON in bench/results/scaling.json
    python bench/scaling.py --part inprocess
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def in_process(trials: int, *, repeats: int) -> dict[str, Any]:
    """`repeats` runs on each database, interleaved; each run in a fresh database and folder."""
    from tests.conftest import temporary_postgres_database

    runs: dict[str, list[dict[str, Any]]] = {"sqlite": [], "postgresql": []}
    for _ in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="hwnas-scaling-"))
        runs["sqlite"].append(_in_process(trials, f"sqlite:///{folder / 'hwnas.db'}", folder))
        with temporary_postgres_database("hwnas_scaling") as url:
            runs["postgresql"].append(_in_process(trials, url, folder))
    medians = {db: {key: statistics.median(run[key] for run in rows)
                    for key in ("wall_s", "controller_overhead_ms_per_trial", "controller_cpu_ms_per_trial")}
               for db, rows in runs.items()}
    print(f"in-process medians of {repeats}: {medians}", flush=True)
    return {"runs": runs, "medians": medians}


def _in_process(trials: int, url: str, folder: Path) -> dict[str, Any]:
    from nas.engine.controller import Controller
    from nas.db.storage import open_storage
    from nas.service import submit_job
    from nas.settings import Settings
    from nas.spec import parse_spec
    from tests.conftest import TINY_SPACE_OPTIONS
    from tests.fakes import FakeDeviceRunner, feature_sum_factory, make_fake_evaluate
    from workers.executors.in_process import InProcessExecutor

    corpus = folder / "corpus.txt"
    corpus.write_text("alpha beta gamma delta\n" * 500)
    storage = open_storage(url)
    spec = parse_spec({"space": "sparse-transformer", "space_options": TINY_SPACE_OPTIONS,
                       "task": {"kind": "language-modeling", "train": str(corpus), "seq_len": 16},
                       "latency_target_ms": 0.3, "budget": {"trials": trials, "train_steps": 1}, "seed": 0})
    job_id = submit_job(storage, spec)
    calls: list[int] = []
    evaluate = make_fake_evaluate(calls)
    eval_s = [0.0]

    def timed(candidate: Any) -> Any:
        began = time.perf_counter()
        try:
            return evaluate(candidate)
        finally:
            eval_s[0] += time.perf_counter() - began

    controller = Controller(storage, Settings(data_dir=folder / f"data-{url.split(':')[0]}", executor="in-process"),
                            executor_factory=lambda: InProcessExecutor(evaluate=timed),
                            latency_model_factory=feature_sum_factory, device_runner=FakeDeviceRunner())
    began = time.perf_counter()
    job = controller.run_job(job_id)
    wall_s = time.perf_counter() - began
    stats = controller.stats[job_id]
    counts = storage.trial_state_counts(job_id)
    result = {"trials": storage.count_trials(job_id), "states": counts, "job_state": job.state,
              "wall_s": round(wall_s, 2), "evaluation_s": round(eval_s[0], 2),
              "controller_overhead_ms_per_trial": round(stats.overhead_ms_per_trial, 2),
              "controller_cpu_ms_per_trial": round(stats.cpu_ms_per_trial, 2),
              "controller_overhead_s": round(stats.overhead_s, 2)}
    print(f"in-process, {url.split(':')[0]}, {result['trials']} trials {counts}: {wall_s:.1f} s wall "
          f"({eval_s[0]:.1f} s evaluating); controller {stats.overhead_ms_per_trial:.2f} ms per trial "
          f"(CPU {stats.cpu_ms_per_trial:.2f} ms)", flush=True)
    return result


def cluster(*, rounds: int, trials: int, train_steps: int, overhead_trials: int) -> dict[str, Any]:
    from tests.conftest import temporary_postgres_database

    with temporary_postgres_database("hwnas_scaling") as url:
        return _cluster(url, rounds=rounds, trials=trials, train_steps=train_steps, overhead_trials=overhead_trials)


def _cluster(url: str, *, rounds: int, trials: int, train_steps: int, overhead_trials: int) -> dict[str, Any]:
    from nas.db.storage import open_storage
    from tests.conftest import FAST_MEASURING_ENV, TINY_SPACE_OPTIONS
    from tests.local_cluster import LocalCluster

    folder = Path(tempfile.mkdtemp(prefix="hwnas-scaling-cluster-"))
    corpus = folder / "corpus.txt"
    corpus.write_text(Path(REPO / "nas" / "spec.py").read_text() * 20)
    env = {**FAST_MEASURING_ENV, "HWNAS_DATABASE_URL": url, "HWNAS_DATA_DIR": str(folder / "data"),
           "HWNAS_RUNNER_POLL_S": "0.2"}
    storage = open_storage(url)

    def run_job(local: LocalCluster, seed: int, count: int, steps: int = train_steps) -> dict[str, Any]:
        from nas.service import submit_job
        from nas.spec import parse_spec

        spec = parse_spec({"space": "sparse-transformer", "space_options": TINY_SPACE_OPTIONS, "device": "cpu-1t",
                           "task": {"kind": "language-modeling", "train": str(corpus), "seq_len": 16},
                           "latency_target_ms": 1000.0, "budget": {"trials": count, "train_steps": steps},
                           "seed": seed})
        job_id = submit_job(storage, spec)
        controller = local.start_controller(env, "--exit-when-idle")
        assert controller.popen.wait(timeout=1800) == 0, controller.output[-3000:]
        rows = storage.trials(job_id)
        first = min(t.started_at for t in rows if t.started_at)
        last = max(t.finished_at for t in rows if t.finished_at)
        minutes = (last - first).total_seconds() / 60
        overhead = re.search(r"controller overhead ([\d.]+) ms per trial \(CPU ([\d.]+) ms\)", controller.output)
        return {"job": job_id, "trials": len(rows), "states": storage.trial_state_counts(job_id),
                "trials_per_min": round(len(rows) / minutes, 2), "span_s": round(minutes * 60, 1),
                "controller_overhead_ms_per_trial": float(overhead.group(1)) if overhead else None,
                "controller_cpu_ms_per_trial": float(overhead.group(2)) if overhead else None}

    local = LocalCluster().start()
    runs: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
    try:
        local.add_worker(cpus=1, device="cpu-1t")
        second = local.add_worker(cpus=1)
        warm = run_job(local, 100, 4)
        print(f"warm-up (profiling, worker start): {warm}", flush=True)
        for r in range(rounds):
            for nodes in ("2", "1") if r % 2 == 0 else ("1", "2"):
                if nodes == "1" and second is not None:
                    second.stop()
                    local.workers.remove(second)
                    second = None
                    time.sleep(5)  # let the head see the node leave
                if nodes == "2" and second is None:
                    second = local.add_worker(cpus=1)
                result = run_job(local, r, trials)
                runs[nodes].append(result)
                print(f"round {r}, {nodes} worker node(s): {result}", flush=True)
        if second is None:
            second = local.add_worker(cpus=1)
        # The controller's own time per trial, with a cheap candidate budget (one training step) and enough
        # trials that the job's one-time costs (Ray's first task, the strategy's study) are spread thin.
        overhead = [run_job(local, 1000 + r, overhead_trials, steps=1) for r in range(3)]
        for result in overhead:
            print(f"{overhead_trials} trials of 1 training step, 2 worker nodes: {result}", flush=True)
    finally:
        local.shutdown()
    one = statistics.median(x["trials_per_min"] for x in runs["1"])
    two = statistics.median(x["trials_per_min"] for x in runs["2"])
    print(f"trials per minute: 1 node {one:.1f}, 2 nodes {two:.1f} (x{two / one:.2f})", flush=True)
    return {"runs": runs, "median_trials_per_min": {"1": one, "2": two}, "speedup_2_over_1": round(two / one, 2),
            "trials": trials, "train_steps": train_steps, "cheap_trials_2_nodes": overhead,
            "cheap_trials_median_overhead_ms_per_trial": statistics.median(
                r["controller_overhead_ms_per_trial"] for r in overhead),
            "cheap_trials_median_cpu_ms_per_trial": statistics.median(
                r["controller_cpu_ms_per_trial"] for r in overhead)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "inprocess", "cluster"], default="all")
    parser.add_argument("--inprocess-trials", type=int, default=1000)
    parser.add_argument("--inprocess-repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--overhead-trials", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scaling.json")
    args = parser.parse_args()
    # One part run alone replaces only its own entry in the results file.
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results = {key: value for key, value in results.items() if key in ("inprocess", "cluster")}
    machine = f"{platform.node()} {platform.machine()}, {platform.python_version()}"
    if args.part in ("all", "inprocess"):
        results["inprocess"] = {**in_process(args.inprocess_trials, repeats=args.inprocess_repeats), "machine": machine,
                                "date": time.strftime("%Y-%m-%d")}
    if args.part in ("all", "cluster"):
        results["cluster"] = {**cluster(rounds=args.rounds, trials=args.trials, train_steps=args.train_steps,
                                          overhead_trials=args.overhead_trials),
                              "machine": machine, "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
