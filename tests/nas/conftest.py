"""Fixtures for the service: an app over a fresh database with a token of each scope, finished jobs made with
fast fakes (feature-sum latency, instant measurements, untrained weights), and a live server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nas.db.storage import Storage, open_storage
from nas.service import issue_token, submit_job
from nas.settings import Settings
from tests.conftest import TINY_SPACE_OPTIONS
from tests.fakes import FakeDeviceRunner, feature_sum_factory, make_fake_evaluate


def tiny_spec(corpus: Path, **changes: Any) -> dict[str, Any]:
    """A job spec (as JSON) that the fakes finish in about a second."""
    data = {"name": "tiny", "space": "sparse-transformer", "space_options": TINY_SPACE_OPTIONS,
            "task": {"kind": "language-modeling", "train": str(corpus), "seq_len": 16, "batch_size": 4},
            "latency_target_ms": 0.5, "strategy": "nsga2", "budget": {"trials": 10, "train_steps": 2}, "seed": 0,
            "search": {"mode": "standalone"}}
    data.update(changes)
    return data


@dataclass
class Service:
    storage: Storage
    settings: Settings
    corpus: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def app(self) -> Any:
        from nas.api import create_app

        return create_app(self.settings, storage=self.storage)

    def runner(self) -> Any:
        """A serve loop over this database with the fast fakes."""
        from nas.runner import JobRunner
        from workers.executors.in_process import InProcessExecutor

        calls: list[int] = []
        return JobRunner(self.storage, self.settings,
                         executor_factory=lambda: InProcessExecutor(evaluate=make_fake_evaluate(calls)),
                         latency_model_factory=feature_sum_factory, device_runner=FakeDeviceRunner())

    def finished_job(self, **changes: Any) -> int:
        """A job submitted and run to its end here (front, checkpoint of the best under 0.5 ms)."""
        from nas.spec import parse_spec

        job_id = submit_job(self.storage, parse_spec(tiny_spec(self.corpus, **changes)))
        self.runner().controller.run_job(job_id)
        return job_id


@pytest.fixture()
def service(database_url: str, tmp_path: Path, corpus_file: Path) -> Service:
    storage = open_storage(database_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, executor="in-process",
                        lease_ttl_s=5, events_interval_s=0.05, runner_poll_s=0.1, max_body_bytes=64 * 1024,
                        data_roots=(corpus_file.parent,))
    svc = Service(storage=storage, settings=settings, corpus=corpus_file)
    for scope in ("read", "submit", "admin"):
        svc.tokens[scope] = issue_token(storage, name=f"test {scope}", scope=scope)[1]
    return svc


@pytest.fixture()
def api(service: Service) -> Any:
    """A TestClient of the app, with no token set (pass `headers=auth(...)`)."""
    from fastapi.testclient import TestClient

    with TestClient(service.app()) as client:
        yield client


def auth(service: Service, scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.tokens[scope]}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    service: Service


@pytest.fixture()
def live_server(service: Service) -> Iterator[LiveServer]:
    """uvicorn on a free loopback port in a thread, with the serve loop running jobs through the fakes."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(service.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    runner = service.runner()
    runner.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.05)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", service=service)
    finally:
        runner.stop(timeout_s=10)
        server.should_exit = True
        thread.join(timeout=10)
