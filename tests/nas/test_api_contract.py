"""The API's contract as a real client reads it: schemathesis' own command line (`schemathesis run URL
--checks all`, every phase including stateful) against a live server, with a bounded number of cases.
Its per-operation settings are in the repository's schemathesis.toml."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.nas.conftest import Service, free_port

# CI runs this many cases per operation and phase; the README's figure is from a full run (the default).
MAX_EXAMPLES = os.environ.get("HWNAS_CONTRACT_EXAMPLES", "5")


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_schemathesis_cli_finds_no_failure(service: Service, tmp_path: Path) -> None:
    import uvicorn

    from nas.api import create_app

    # Failed authentications are part of the contract run (every check sends bad tokens): no rate limit.
    settings = service.settings.model_copy(update={"auth_failures_per_minute": 1_000_000})
    service.finished_job()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, storage=service.storage), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    runner = service.runner()
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        cli = Path(sys.executable).with_name("schemathesis")
        began = time.monotonic()
        result = subprocess.run(
            [str(cli), "run", f"http://127.0.0.1:{port}/api/v1/openapi.json", "--checks", "all",
             "--max-examples", MAX_EXAMPLES, "--seed", "1", "-H",
             f"Authorization: Bearer {service.tokens['admin']}", "--report", "junit",
             "--report-dir", str(tmp_path)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        print(f"schemathesis took {time.monotonic() - began:.1f} s")  # noqa: T201
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        # the run submitted jobs: cancel them and let the running ones end before the process does
        for job in service.storage.list_jobs(limit=10_000, states=("queued", "running")):
            service.storage.request_cancel(job.id)
        runner.stop(timeout_s=10)
        deadline = time.monotonic() + 120
        while runner.active_jobs and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"drained at {time.monotonic() - began:.1f} s; jobs {service.storage.count_jobs()}")  # noqa: T201
    tail = result.stdout[-6000:]
    assert result.returncode == 0, tail
    assert "passed" in tail and "failed" not in tail.split("SUMMARY")[-1].lower(), tail
