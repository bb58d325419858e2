"""The service under load (issue 14): throughput as clients are added, and reliability under mixed load.

Part `clients` (throughput that holds as clients are added): one completed job of `--trials` trials, served
by `hwnas serve --no-controller` (`--workers` API processes); for `--seconds` each, C concurrent asyncio
clients (httpx, loopback) loop over: the front, the job, a page of 100 trials, the job list. Reports
requests per second and p50/p95 per endpoint for each C in `--clients`, on SQLite or PostgreSQL.

Part `reliability`: PostgreSQL, a 10,000-trial completed job and a running job (its trials are appended by
this script once a second, as a controller would; the server runs no controller, so the jobs submitted
here stay queued and no training competes for the two cores); for `--seconds`: `--watchers` SSE watchers
of the running job, `--readers` clients reading fronts and trial pages, `--writers` clients uploading a
dataset and submitting a job on it. Reports requests per second, p50/p95/p99 per endpoint, errors (5xx),
lost submissions (a 201 whose job is not stored) and the database's connections. With `--restart-at S`
the server is killed at S seconds and started again; clients retry what failed, and every acknowledged
submission must still be stored.

    python bench/load.py --part clients --clients 1 10 50 --workers 1
    python bench/load.py --part clients --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test --workers 4
    python bench/load.py --part reliability --restart-at 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from api_front import fill, free_port  # noqa: E402


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {"n": len(values), "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99)}


class Server:
    """`hwnas serve --no-controller` in a subprocess on a free loopback port."""

    def __init__(self, *, url: str, folder: Path, workers: int, extra_env: dict[str, str] | None = None,
                 repo: Path = REPO) -> None:
        self.repo = repo
        self.port = free_port()
        self.env = {**os.environ, "HWNAS_DATA_DIR": str(folder / "data"), "HWNAS_DATABASE_URL": url,
                    "HWNAS_EXECUTOR": "in-process", "HWNAS_PORT": str(self.port), "HWNAS_API_WORKERS": str(workers),
                    "HWNAS_AUTH_FAILURES_PER_MINUTE": "1000000", **(extra_env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import httpx

        self.process = subprocess.Popen([sys.executable, "-m", "nas.cli", "serve", "--no-controller"], env=self.env,
                                        cwd=self.repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/api/v1/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("hwnas serve did not start within 60 s")

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


# ---- part: clients ------------------------------------------------------------------------------
async def read_loop(session: Any, base: str, paths: dict[str, str], until: float,
                    timings: dict[str, list[float]], errors: dict[str, int]) -> None:
    names = list(paths)
    i = random.randrange(len(names))
    while time.monotonic() < until:
        name = names[i % len(names)]
        i += 1
        started = time.perf_counter()
        try:
            async with session.get(base + paths[name]) as response:
                await response.read()
                ok = response.status < 500
        except Exception:  # noqa: BLE001 - a broken connection counts as an error
            ok = False
        timings[name].append(1000 * (time.perf_counter() - started))
        if not ok:
            errors[name] += 1


async def run_clients(base: str, token: str, paths: dict[str, str], *, clients: int, seconds: float) -> dict[str, Any]:
    """C closed-loop clients on one aiohttp session (httpx's async pool, tried first, spent more CPU than the
    server it measured at 50 clients: two processes of 25 clients got twice the requests through)."""
    import aiohttp

    timings: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        for path in paths.values():
            async with session.get(base + path) as response:
                response.raise_for_status()
        until = time.monotonic() + seconds
        started, cpu_started = time.monotonic(), time.process_time()
        await asyncio.gather(*(read_loop(session, base, paths, until, timings, errors) for _ in range(clients)))
        elapsed, client_cpu_s = time.monotonic() - started, time.process_time() - cpu_started
    total = sum(len(v) for v in timings.values())
    return {"clients": clients, "requests_per_s": round(total / elapsed, 1), "errors": sum(errors.values()),
            "client_cpu_share": round(client_cpu_s / elapsed, 2),
            "endpoints": {name: quantiles(v) for name, v in timings.items()}}


def fill_with(repo: Path, url: str, *, trials: int) -> tuple[int, str]:
    """`api_front.fill` run by the checkout that will serve the database (its own schema revision)."""
    if repo == REPO:
        job_id, token, _ = fill(url, trials=trials, seed=0)
        return job_id, token
    code = ("import sys, json; sys.path[:0] = ['.', 'bench']; from api_front import fill; "
            f"print(json.dumps(fill({url!r}, trials={trials}, seed=0)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    job_id, token, _ = json.loads(out.stdout.strip().splitlines()[-1])
    return job_id, token


def part_clients(args: argparse.Namespace, url: str, folder: Path) -> dict[str, Any]:
    job_id, token = fill_with(args.server_repo, url, trials=args.trials)
    server = Server(url=url, folder=folder, workers=args.workers, repo=args.server_repo)
    server.start()
    paths = {"front": f"/api/v1/jobs/{job_id}/front", "job": f"/api/v1/jobs/{job_id}",
             "trials": f"/api/v1/jobs/{job_id}/trials?limit=100&offset=200", "jobs": "/api/v1/jobs"}
    try:
        runs = [asyncio.run(run_clients(server.base, token, paths, clients=c, seconds=args.seconds))
                for c in args.clients]
    finally:
        server.stop()
    for run in runs:
        print(f"{run['clients']:>3} clients: {run['requests_per_s']:>7.1f} req/s, errors {run['errors']}, "
              f"client CPU {run['client_cpu_share']:.2f} cores, "
              + ", ".join(f"{n} p50 {q['p50_ms']} p95 {q['p95_ms']} ms" for n, q in run["endpoints"].items()))
    return {"part": "clients", "workers": args.workers, "trials": args.trials, "seconds": args.seconds,
            "server_repo_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.server_repo,
                                                 capture_output=True, text=True).stdout.strip(), "runs": runs}


# ---- part: reliability --------------------------------------------------------------------------
def append_trials(url: str, job_id: int, stop: threading.Event) -> None:
    """Play a controller: one more complete trial of the running job each second."""
    from nas.db.models import TrialRow
    from nas.db.storage import open_storage

    storage = open_storage(url)
    number = 0
    rng = random.Random(1)
    while not stop.wait(1.0):
        with contextlib.suppress(Exception):
            with storage.session() as s:
                s.add(TrialRow(job_id=job_id, number=number, optuna_number=number, arch={"config": {}},
                               arch_hash=f"{number:032x}", state="complete", predicted_latency_ms=rng.uniform(0.3, 3),
                               metric=rng.uniform(2, 4), attempts=1))
            number += 1


async def watcher(base: str, headers: dict[str, str], job_id: int, until: float, stats: dict[str, Any]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=None) as client:
        while time.monotonic() < until:
            try:
                async with client.stream("GET", f"/api/v1/jobs/{job_id}/events",
                                         params={"max_wait_s": max(1.0, until - time.monotonic())}) as response:
                    if response.status_code >= 500:
                        stats["errors"]["events"] += 1
                    async for line in response.aiter_lines():
                        if line.startswith("event: progress"):
                            stats["events"] += 1
                        if time.monotonic() >= until:
                            break
            except Exception:  # noqa: BLE001 - the server restarting: reconnect
                stats["reconnects"] += 1
                await asyncio.sleep(0.5)


async def reader(client: Any, paths: dict[str, str], until: float, stats: dict[str, Any]) -> None:
    names = list(paths)
    while time.monotonic() < until:
        name = random.choice(names)
        started = time.perf_counter()
        try:
            response = await client.get(paths[name])
            if response.status_code >= 500:
                stats["errors"][name] += 1
        except Exception:  # noqa: BLE001 - the server restarting: try again
            stats["retries"] += 1
            await asyncio.sleep(0.2)
            continue
        stats["timings"][name].append(1000 * (time.perf_counter() - started))


async def writer(client: Any, number: int, until: float, stats: dict[str, Any]) -> None:
    """Upload a small corpus and submit a job on it, retrying each step until acknowledged."""
    rng = random.Random(number)
    i = 0
    while time.monotonic() < until:
        i += 1
        text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(3000)).encode()
        name = f"w{number}-{i}"
        dataset = None
        while dataset is None and time.monotonic() < until + 30:
            started = time.perf_counter()
            try:
                response = await client.post("/api/v1/datasets", files={"file": ("c.txt", text, "text/plain")},
                                              data={"name": name, "format": "text"})
            except Exception:  # noqa: BLE001
                stats["retries"] += 1
                await asyncio.sleep(0.5)
                continue
            stats["timings"]["upload"].append(1000 * (time.perf_counter() - started))
            if response.status_code >= 500:
                stats["errors"]["upload"] += 1
                await asyncio.sleep(0.5)
            elif response.status_code in (200, 201):
                dataset = response.json()
        if dataset is None:
            return
        spec = {"name": name, "space": "sparse-transformer", "task": {"kind": "language-modeling",
                "train": f"dataset:{name}", "seq_len": 16, "batch_size": 4}, "latency_target_ms": 1.0,
                "budget": {"trials": 4, "train_steps": 2}}
        while time.monotonic() < until + 30:
            started = time.perf_counter()
            try:
                response = await client.post("/api/v1/jobs", json=spec)
            except Exception:  # noqa: BLE001 - unacknowledged: submit again (a duplicate is harmless here)
                stats["retries"] += 1
                await asyncio.sleep(0.5)
                continue
            stats["timings"]["submit"].append(1000 * (time.perf_counter() - started))
            if response.status_code == 201:
                stats["acknowledged"].append(response.json()["job_id"])
                break
            stats["errors"]["submit"] += response.status_code >= 500
            await asyncio.sleep(0.5)


async def mixed_load(base: str, token: str, *, big_job: int, running_job: int, seconds: float, watchers: int,
                     readers: int, writers: int, restart: Any) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    stats: dict[str, Any] = {"timings": defaultdict(list), "errors": defaultdict(int), "events": 0, "reconnects": 0,
                             "retries": 0, "acknowledged": []}
    paths = {"front": f"/api/v1/jobs/{big_job}/front", "trial_page": f"/api/v1/jobs/{big_job}/trials?limit=100",
             "running_front": f"/api/v1/jobs/{running_job}/front", "job": f"/api/v1/jobs/{running_job}"}
    limits = httpx.Limits(max_connections=readers + writers, max_keepalive_connections=readers + writers)
    started = time.monotonic()
    until = started + seconds
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as client:
        tasks = [asyncio.create_task(watcher(base, headers, running_job, until, stats)) for _ in range(watchers)]
        tasks += [asyncio.create_task(reader(client, paths, until, stats)) for _ in range(readers)]
        tasks += [asyncio.create_task(writer(client, i, until, stats)) for i in range(writers)]
        if restart is not None:
            tasks.append(asyncio.create_task(restart(started)))
        await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    total = sum(len(v) for v in stats["timings"].values())
    return {"requests_per_s": round(total / elapsed, 1), "requests": total,
            "endpoints": {n: quantiles(v) for n, v in stats["timings"].items()},
            "errors_5xx": dict(stats["errors"]), "sse_progress_events": stats["events"],
            "sse_reconnects": stats["reconnects"], "client_retries": stats["retries"],
            "acknowledged_submissions": stats["acknowledged"]}


def part_reliability(args: argparse.Namespace, url: str, folder: Path) -> dict[str, Any]:
    from nas.db.storage import open_storage

    big_job, token, _ = fill(url, trials=args.trials, seed=0)
    storage = open_storage(url)
    running = storage.create_job(spec=storage.get_job(big_job).spec, name="running", space="sparse-transformer",
                                 device="cpu-1t", latency_target_ms=2.0, strategy="nsga2", trials_budget=100_000)
    storage.claim_job(running, owner="bench", ttl_s=86_400)
    from nas.service import issue_token

    token = issue_token(storage, name="bench writer", scope="submit")[1]
    stop = threading.Event()
    appender = threading.Thread(target=append_trials, args=(url, running, stop), daemon=True)
    appender.start()
    server = Server(url=url, folder=folder, workers=args.workers)
    server.start()
    peak_connections = [0]
    sampling = threading.Event()

    def sample_connections() -> None:
        import psycopg

        database = url.rsplit("/", 1)[1]
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            while not sampling.wait(1.0):
                (count,) = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                        (database,)).fetchone()
                peak_connections[0] = max(peak_connections[0], int(count))

    sampler = threading.Thread(target=sample_connections, daemon=True)
    sampler.start()

    async def restart(started: float) -> None:
        await asyncio.sleep(max(0.0, started + args.restart_at - time.monotonic()))
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.start)

    try:
        result = asyncio.run(mixed_load(server.base, token, big_job=big_job, running_job=running,
                                        seconds=args.seconds, watchers=args.watchers, readers=args.readers,
                                        writers=args.writers,
                                        restart=restart if args.restart_at else None))
    finally:
        stop.set()
        sampling.set()
        server.stop()
    stored = {j.id for j in storage.list_jobs(limit=100_000)}
    acknowledged = result.pop("acknowledged_submissions")
    result.update(acknowledged=len(acknowledged), lost_submissions=len([j for j in acknowledged if j not in stored]),
                  peak_database_connections=peak_connections[0], restart_at_s=args.restart_at)
    print(json.dumps(result, indent=2))
    return {"part": "reliability", "workers": args.workers, "trials": args.trials, "seconds": args.seconds,
            "watchers": args.watchers, "readers": args.readers, "writers": args.writers, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["clients", "reliability"], required=True)
    parser.add_argument("--database-url", default=None,
                        help="clients: default a SQLite file; reliability: a temporary PostgreSQL database")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("HWNAS_API_WORKERS", "0")) or None)
    parser.add_argument("--trials", type=int, default=None, help="clients: 400; reliability: 10,000")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--writers", type=int, default=5)
    parser.add_argument("--restart-at", type=float, default=None)
    parser.add_argument("--server-repo", type=Path, default=REPO,
                        help="clients: serve from this checkout (to compare against an older commit)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.workers = args.workers or 2
    folder = Path(tempfile.mkdtemp(prefix="hwnas-bench-load-"))
    with contextlib.ExitStack() as stack:
        if args.database_url:
            url = args.database_url
        elif args.part == "reliability":
            from tests.conftest import temporary_postgres_database

            url = stack.enter_context(temporary_postgres_database("hwnas_bench"))
        else:
            url = f"sqlite:///{folder / 'hwnas.db'}"
        if args.part == "clients":
            args.trials = args.trials or 400
            result = part_clients(args, url, folder)
        else:
            args.trials = args.trials or 10_000
            args.seconds = args.seconds if args.seconds != 20.0 else 60.0
            result = part_reliability(args, url, folder)
    database = "postgresql" if url.startswith("postgresql") else "sqlite"
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
              "database": database, "command": " ".join(sys.argv), **result}
    name = f"load_{args.part}_{database}_w{args.workers}" + ("_restart" if args.restart_at else "")
    out = args.out or REPO / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
