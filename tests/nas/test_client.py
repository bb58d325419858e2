"""The service from the outside: `nas.client` and the CLI in client mode against a live server on loopback,
and `hwnas serve` / `hwnas token` as a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.client import HwnasClient
from nas.errors import AuthError, ForbiddenError, NotFoundError, SpecError
from tests.conftest import FAST_MEASURING_ENV, REPO_ROOT
from tests.nas.conftest import LiveServer, free_port, tiny_spec


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_python_client_submit_wait_front_and_download(live_server: LiveServer, tmp_path: Path) -> None:
    service = live_server.service
    client = HwnasClient(live_server.url, service.tokens["submit"])
    job = client.submit(tiny_spec(service.corpus))
    assert job["state"] == "queued"
    done = client.wait(job["job_id"], progress=False)
    assert done["state"] == "completed" and done["trials"] == 10

    front = client.front(job["job_id"])
    stored = service.storage.front(job["job_id"])
    assert list(front["trial"]) == [m.trial.number for m in stored]
    assert list(front["bits_per_char"]) == [m.metric for m in stored]
    assert front.attrs["latency_target_ms"] == 0.5

    out = client.download_best(job["job_id"], tmp_path / "best")
    (checkpoint,) = service.storage.checkpoints(job["job_id"])
    assert json.loads((out / "hwnas.json").read_text())["trial"] == service.storage.trial_by_id(checkpoint.trial_id).number
    assert {p.name for p in out.iterdir()} == {p.name for p in Path(checkpoint.path).iterdir()}
    for p in Path(checkpoint.path).iterdir():
        assert hashlib.sha256((out / p.name).read_bytes()).digest() == hashlib.sha256(p.read_bytes()).digest()

    with pytest.raises(SpecError, match="not empty"):
        client.download_best(job["job_id"], out)
    with pytest.raises(NotFoundError, match="job 777 does not exist"):
        client.job(777)
    with pytest.raises(ForbiddenError, match="scope 'submit'"):
        HwnasClient(live_server.url, service.tokens["read"]).submit(tiny_spec(service.corpus))
    with pytest.raises(AuthError, match="unknown, expired or revoked"):
        HwnasClient(live_server.url, "hwnas_wrong").jobs()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], env={**os.environ, **env}, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_as_a_client_submit_jobs_pareto_fetch(live_server: LiveServer, tmp_path: Path) -> None:
    service = live_server.service
    spec = tmp_path / "specs" / "job.json"
    spec.parent.mkdir()
    data = tiny_spec(service.corpus)
    data["task"]["train"] = os.path.relpath(service.corpus, spec.parent)  # relative to the spec file
    spec.write_text(json.dumps(data))
    env = {"HWNAS_URL": live_server.url, "HWNAS_TOKEN": service.tokens["submit"],
           "HWNAS_DATA_DIR": str(tmp_path / "elsewhere")}  # the client must not touch a local database

    submitted = cli(env, "submit", str(spec), "--wait")
    assert submitted.returncode == 0, submitted.stderr
    job_id = int(next(line for line in submitted.stdout.splitlines() if line.startswith("submitted job")).split()[2])
    assert f"job {job_id} completed" in submitted.stdout
    # the local corpus went up as a dataset, and the stored spec names its bytes
    (dataset,) = service.storage.datasets.list()[1]
    assert dataset.sha256 == hashlib.sha256(service.corpus.read_bytes()).hexdigest()
    assert service.storage.get_job(job_id).spec["task"]["train"] == f"dataset:sha256:{dataset.sha256}"
    again = cli(env, "submit", str(spec))  # the server has these bytes: no second upload
    assert again.returncode == 0, again.stderr
    assert service.storage.datasets.list()[0] == 1 and dataset.created_by == "test submit"
    jobs = cli(env, "jobs", "--json")
    assert [j["job_id"] for j in json.loads(jobs.stdout)][-1] == job_id
    pareto = json.loads(cli(env, "pareto", str(job_id), "--json").stdout)
    assert [m["trial"] for m in pareto["front"]] == [m.trial.number for m in service.storage.front(job_id)]

    best_fast = min(pareto["front"], key=lambda m: m["latency_ms"])
    fetched = cli(env, "fetch", str(job_id), "--best", "--max-latency-ms", str(best_fast["latency_ms"]),
                  "--out", str(tmp_path / "fast"))
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads((tmp_path / "fast" / "hwnas.json").read_text())["trial"] == best_fast["trial"]
    none = cli(env, "fetch", str(job_id), "--best", "--max-latency-ms", "0.00001", "--out", str(tmp_path / "none"))
    assert none.returncode == 4 and "no trained trial at or under 1e-05 ms" in none.stderr
    assert not (tmp_path / "none").exists()
    assert not (tmp_path / "elsewhere").exists()

    bad = cli({**env, "HWNAS_TOKEN": "hwnas_wrong"}, "jobs")
    assert bad.returncode == 8 and "unknown, expired or revoked" in bad.stderr


def first_admin_token(process: subprocess.Popen[str], *, deadline: float) -> str | None:
    """The token `hwnas serve` prints once on a first start, read from its output."""
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if line.startswith("first admin token"):
            return line.rsplit(" ", 1)[-1].strip()
    return None


def wait_until_healthy(url: str, *, deadline: float) -> None:
    import httpx

    while True:
        try:
            httpx.get(f"{url}/api/v1/health")
            return
        except httpx.ConnectError:
            assert time.monotonic() < deadline, "server did not answer"
            time.sleep(0.2)


@pytest.mark.slow
def test_serve_binds_loopback_prints_a_first_admin_token_and_never_logs_it(tmp_path: Path) -> None:
    import httpx

    port = free_port()
    env = {**os.environ, "HWNAS_DATA_DIR": str(tmp_path / "data"), "HWNAS_EXECUTOR": "in-process",
           **FAST_MEASURING_ENV}
    process = subprocess.Popen([sys.executable, "-m", "nas.cli", "serve", "--port", str(port)], env=env,
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        token = first_admin_token(process, deadline=deadline)
        assert token and token.startswith("hwnas_")
        assert process.stdout.readline().strip() == f"web page: http://127.0.0.1:{port}/#token={token}"
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, deadline=deadline)
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/api/v1/jobs", headers=headers).status_code == 200
        assert httpx.get(f"{url}/api/v1/jobs/5", headers=headers).status_code == 404
        assert httpx.post(f"{url}/api/v1/devices", json={"name": "cpu-8t", "threads": 8},
                          headers=headers).status_code == 201
        assert httpx.get(f"{url}/api/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=30)
        output = process.stdout.read()  # the same buffered reader: what followed the banner
    assert "127.0.0.1" in output and '"GET /api/v1/jobs/5 HTTP/1.1" 404' in output  # the access log is on
    assert output.count(token) == 0, "after the banner, the token must never be printed again"

    listed = subprocess.run([sys.executable, "-m", "nas.cli", "token", "list", "--json"], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    (row,) = json.loads(listed.stdout)
    assert row["scope"] == "admin" and token not in listed.stdout and token.startswith(row["prefix"])
    created = subprocess.run([sys.executable, "-m", "nas.cli", "token", "create", "--scope", "read"], env=env,
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0 and created.stdout.strip().startswith("hwnas_")
    again = subprocess.run([sys.executable, "-m", "nas.cli", "token", "create", "--scope", "root"], env=env,
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "scope: must be one of read, submit, admin" in again.stderr


@pytest.mark.slow
def test_serve_with_several_api_processes(tmp_path: Path) -> None:
    """`hwnas serve --workers 2`: two API processes answer on one port, each with the app built from the
    environment; a token created through one is accepted by both, and a revocation holds in both at once."""
    import httpx

    port = free_port()
    env = {**os.environ, "HWNAS_DATA_DIR": str(tmp_path / "data"), "HWNAS_EXECUTOR": "in-process",
           **FAST_MEASURING_ENV}
    process = subprocess.Popen([sys.executable, "-m", "nas.cli", "serve", "--port", str(port), "--workers", "2",
                                "--no-controller"], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        token = first_admin_token(process, deadline=deadline)
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, deadline=deadline)
        admin = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{url}/api/v1/tokens", json={"name": "w", "scope": "read"}, headers=admin).json()
        reader = {"Authorization": f"Bearer {created['token']}"}
        with httpx.Client(base_url=url) as client:  # new connections land on either process
            assert all(httpx.get(f"{url}/api/v1/jobs", headers=reader).status_code == 200 for _ in range(10))
            assert client.delete(f"/api/v1/tokens/{created['id']}", headers=admin).status_code == 200
            assert all(httpx.get(f"{url}/api/v1/jobs", headers=reader).status_code == 401 for _ in range(10))
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
