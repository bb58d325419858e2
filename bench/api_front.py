"""How fast the API answers for a big job (issue 5's benchmark): a job of 10,000 trials, served by `hwnas serve`.

Fills a database (SQLite file, or PostgreSQL with --database-url) with one completed job of `--trials` trials
(random sparse-transformer archs; metric falling with latency, plus noise; 10% infeasible), its Pareto front
computed by `nas.engine.pareto`, and a read token; starts `hwnas serve` on a free loopback port in a subprocess,
and times over real HTTP, interleaved, `--repeats` rounds of:
  front    GET /api/v1/jobs/{id}/front                  (goal: under 100 ms)
  job      GET /api/v1/jobs/{id}                        (the page's polling)
  trials   GET /api/v1/jobs/{id}/trials?limit=5000      (one of the two pages the job page's plot loads)
Prints medians and 90th percentiles; writes bench/results/api_front[_postgres].json.

    python bench/api_front.py
    python bench/api_front.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/hwnas_bench
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def fill(url: str, *, trials: int, seed: int) -> tuple[int, str, int]:
    """One completed job with `trials` trials and its front; returns (job id, read token, front size)."""
    from nas.db.models import TrialRow
    from nas.db.storage import open_storage
    from nas.engine.pareto import Point, hypervolume, pareto_front
    from nas.service import issue_token
    from search_spaces.base import get_space, random_archs

    storage = open_storage(url)
    spec = {"name": "bench", "space": "sparse-transformer", "space_options": {},
            "task": {"kind": "language-modeling", "train": "builtin:python-stdlib"}, "device": "cpu-1t",
            "latency_target_ms": 2.0, "strategy": "nsga2", "budget": {"trials": trials, "train_steps": 1}, "seed": 0}
    job_id = storage.create_job(spec=spec, name="bench", space="sparse-transformer", device="cpu-1t",
                                latency_target_ms=2.0, strategy="nsga2", trials_budget=trials)
    space = get_space("sparse-transformer", {})
    archs = random_archs(space, count=min(trials, 500), seed=seed)
    rng = random.Random(seed)
    rows = []
    for number in range(trials):
        arch = archs[number % len(archs)]
        latency = rng.uniform(0.3, 4.0)
        infeasible = rng.random() < 0.1
        rows.append(TrialRow(job_id=job_id, number=number, optuna_number=number, arch=arch.to_dict(),
                             arch_hash=arch.hash, state="infeasible" if infeasible else "complete",
                             predicted_latency_ms=latency, predicted_latency_std_ms=0.02 * latency,
                             metric=None if infeasible else 3.0 - 0.4 * math.log(latency) + rng.gauss(0, 0.1),
                             params=rng.randint(10_000, 5_000_000), metrics=None, attempts=1))
    with storage.session() as s:
        s.add_all(rows)
    complete = [t for t in storage.trials(job_id) if t.state == "complete"]
    points = [Point(t.id, t.metric, t.predicted_latency_ms) for t in complete]
    front = pareto_front(points)
    storage.replace_front(job_id, [(p.key, p.metric, p.latency_ms) for p in front], trials_done=trials,
                          hypervolume=hypervolume(points, reference=(5.0, 5.0)))
    storage.claim_job(job_id, owner="bench", ttl_s=60)
    storage.release_job(job_id, owner="bench", state="completed", message="benchmark job")
    return job_id, issue_token(storage, name="bench", scope="read")[1], len(front)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import httpx

    folder = Path(tempfile.mkdtemp(prefix="hwnas-bench-api-"))
    url = args.database_url or f"sqlite:///{folder / 'hwnas.db'}"
    started = time.perf_counter()
    job_id, token, front_size = fill(url, trials=args.trials, seed=args.seed)
    fill_s = time.perf_counter() - started
    port = free_port()
    env = {**os.environ, "HWNAS_DATA_DIR": str(folder / "data"), "HWNAS_DATABASE_URL": url,
           "HWNAS_EXECUTOR": "in-process", "HWNAS_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "nas.cli", "serve"], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    paths = {"front": f"/api/v1/jobs/{job_id}/front", "job": f"/api/v1/jobs/{job_id}",
             "trials": f"/api/v1/jobs/{job_id}/trials?limit=5000"}
    timings: dict[str, list[float]] = {name: [] for name in paths}
    sizes: dict[str, int] = {}
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/api/v1/health")
                    break
                except httpx.ConnectError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            for path in paths.values():  # warm up
                client.get(path).raise_for_status()
            for _ in range(args.repeats):
                for name, path in paths.items():
                    t0 = time.perf_counter()
                    response = client.get(path)
                    timings[name].append(1000 * (time.perf_counter() - t0))
                    response.raise_for_status()
                    sizes[name] = len(response.content)
    finally:
        server.terminate()
        server.wait(timeout=30)

    def quantile(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=10)[int(q * 10) - 1]

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "database": "postgresql" if url.startswith("postgresql") else "sqlite",
        "trials": args.trials, "front_members": front_size, "repeats": args.repeats, "fill_s": round(fill_s, 1),
        "endpoints": {name: {"median_ms": round(statistics.median(v), 2), "p90_ms": round(quantile(v, 0.9), 2),
                             "bytes": sizes[name]} for name, v in timings.items()},
    }
    print(json.dumps(result, indent=2))
    out = args.out or REPO / "bench" / "results" / f"api_front{'_postgres' if result['database'] == 'postgresql' else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
