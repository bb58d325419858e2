"""The compose file's wiring, proven without containers: each hwnas service of `deploy/compose.yaml` runs as a
local process through the image's own entry point (`deploy/entrypoint.sh`), with the service's command and
environment, PostgreSQL at 127.0.0.1 and Ray on loopback; a job submitted through the API completes.

What differs from compose, and only that: host names become 127.0.0.1 (`postgres`, `ray-head`), ports are
free ones, the API binds 127.0.0.1 instead of 0.0.0.0, `/data` is a temporary folder, and the head gets
`--node-ip-address 127.0.0.1 --include-dashboard false` (tests listen on loopback only).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAST_MEASURING_ENV, TINY_SPACE_OPTIONS, temporary_postgres_database
from tests.local_cluster import Process, base_env, free_port, spawn

pytestmark = [pytest.mark.cluster, pytest.mark.ray, pytest.mark.slow, pytest.mark.postgres]
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENTRYPOINT = str(DEPLOY / "entrypoint.sh")


def _compose_env(service: dict, *, database_url: str, ray_address: str, data_dir: Path,
                 token: str) -> dict[str, str]:
    """The service's environment with compose's variables filled in and its hosts on loopback."""
    env = {}
    for key, value in service["environment"].items():
        value = re.sub(r"\$\{RAY_AUTH_TOKEN[^}]*\}", token, str(value))
        value = re.sub(r"\$\{POSTGRES_PASSWORD[^}]*\}", "unused", value)
        value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)  # unset in .env: compose's default
        assert "${" not in value, f"{key}: {value!r} needs a variable the test does not set"
        env[key] = value
    assert env["HWNAS_DATABASE_URL"].endswith("@postgres:5432/hwnas")
    env["HWNAS_DATABASE_URL"] = database_url  # the same database role, on 127.0.0.1 (trust authentication)
    assert env["HWNAS_RAY_ADDRESS"] == "ray-head:6379"
    env["HWNAS_RAY_ADDRESS"] = ray_address
    assert env["HWNAS_DATA_DIR"] == "/data"
    env["HWNAS_DATA_DIR"] = str(data_dir)
    return env


@pytest.fixture()
def stack(postgres_server: str, tmp_path: Path) -> Iterator[dict]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    port, token = free_port(), secrets.token_hex(32)
    ray_address = f"127.0.0.1:{port}"
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    processes: list[Process] = []
    with temporary_postgres_database("hwnas_compose") as url:
        def env_of(name: str) -> dict[str, str]:
            return base_env(**_compose_env(services[name], database_url=url, ray_address=ray_address,
                                           data_dir=tmp_path / "data", token=token), **FAST_MEASURING_ENV,
                            PATH=path, RAY_PORT=str(port))

        def start(name: str, *extra: str) -> Process:
            command = [ray_address if arg == "ray-head:6379" else arg for arg in services[name]["command"]]
            process = spawn(name, ["/bin/sh", ENTRYPOINT, *command, *extra], env_of(name))
            processes.append(process)
            return process

        try:
            head = start("ray-head", "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
                         "--ray-client-server-port", str(free_port()),
                         "--dashboard-agent-listen-port", str(free_port()))
            head.wait_for(r"Ray runtime started", timeout_s=120)
            api_port = free_port()
            command = services["api"]["command"]
            assert command[:2] == ["serve", "--no-controller"]
            api = spawn("api", ["/bin/sh", ENTRYPOINT, "serve", "--no-controller", "--host", "127.0.0.1",
                                "--port", str(api_port)], env_of("api"))
            processes.append(api)
            for name in ("worker-cpu-1t", "worker"):
                start(name, "--node-ip-address", "127.0.0.1", "--num-cpus", "1").wait_for(r"joined", timeout_s=120)
            start("controller")
            api.wait_for(r"hwnas serving http", timeout_s=120)
            yield {"api": f"http://127.0.0.1:{api_port}", "env": env_of("api"), "processes": processes}
        finally:
            for process in reversed(processes):
                process.stop()


def test_a_job_submitted_through_the_api_completes_on_the_compose_services(stack: dict) -> None:
    import subprocess

    import httpx

    # The first admin token, as deploy/README.md says: `hwnas token create` through the entry point.
    made = subprocess.run(["/bin/sh", ENTRYPOINT, "hwnas", "token", "create", "--scope", "admin",
                           "--name", "first-admin"], env=stack["env"], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[0]  # the token first, then how to use it
    headers = {"Authorization": f"Bearer {token}"}
    spec = {"name": "compose-wiring", "space": "sparse-transformer", "space_options": TINY_SPACE_OPTIONS,
            "task": {"kind": "language-modeling", "train": "builtin:python-stdlib", "seq_len": 16},
            "device": "cpu-1t", "latency_target_ms": 1000.0, "strategy": "random",
            "budget": {"trials": 3, "train_steps": 20}, "search": {"mode": "standalone"}, "seed": 0}
    with httpx.Client(base_url=stack["api"], headers=headers, timeout=30) as api:
        assert api.get("/api/v1/health").status_code == 200
        created = api.post("/api/v1/jobs", json=spec)
        assert created.status_code in (200, 201, 202), created.text
        job_id = created.json()["job_id"]
        deadline = time.monotonic() + 420
        state = ""
        while time.monotonic() < deadline:
            job = api.get(f"/api/v1/jobs/{job_id}").json()
            state = job["state"]
            if state in ("completed", "failed", "cancelled"):
                break
            for process in stack["processes"]:
                assert process.popen.poll() is None, f"{process.name} exited:\n{process.output[-3000:]}"
            time.sleep(1.0)
        logs = "\n".join(p.output[-1500:] for p in stack["processes"])
        assert state == "completed", f"{job}\n{logs}"
        assert job["checkpoint"], job
        trials = api.get(f"/api/v1/jobs/{job_id}/trials").json()["items"]
        workers = {t["worker"] for t in trials if t["state"] == "complete"}
        assert workers and None not in workers and all(":node-" in w for w in workers)  # on Ray worker nodes
