"""Schema-based fuzzing of the API (schemathesis against the app's own OpenAPI schema): no 5xx, and every
error is a JSON problem. Runs over a database holding one finished job, with a token of each scope."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from nas.db.storage import open_storage
from nas.service import issue_token, submit_job
from nas.settings import Settings
from nas.spec import parse_spec
from tests.nas.conftest import Service, tiny_spec

# CI fuzzes every operation this many times; raise it locally with HWNAS_FUZZ_EXAMPLES=1000.
EXAMPLES = int(os.environ.get("HWNAS_FUZZ_EXAMPLES", "60"))
_state: dict[str, Any] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("fuzz")
    corpus = folder / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 400, encoding="utf-8")
    url = f"sqlite:///{folder / 'hwnas.db'}"
    storage = open_storage(url)
    service = Service(storage=storage, corpus=corpus,
                      settings=Settings(data_dir=folder / "data", database_url=url, executor="in-process",
                                        max_body_bytes=64 * 1024))
    job_id = service.finished_job()
    submit_job(storage, parse_spec(tiny_spec(corpus, name="queued")))
    _state["job_id"] = job_id
    _state["headers"] = {"Authorization": f"Bearer {issue_token(storage, name='fuzz', scope='admin')[1]}"}
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", service.app())


def operations(schema: Any) -> list[Any]:
    # The event stream of a queued job stays open (up to max_wait_s); it has its own tests in test_api.py.
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if not op.path.endswith("/events")]


@pytest.mark.slow
def test_no_server_errors_and_every_error_is_a_problem(api_schema: Any) -> None:
    """Every operation, fuzzed from its schema (schemathesis' strategies run by Hypothesis)."""
    from hypothesis import given

    fuzzed = []
    for operation in operations(api_schema):

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            if "job_id" in (case.path_parameters or {}) and case.path_parameters["job_id"] % 3 == 0:
                case.path_parameters["job_id"] = _state["job_id"]  # also fuzz a job with trials and a checkpoint
            response = case.call(headers=_state["headers"])
            assert response.status_code < 500, \
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
            if response.status_code >= 400:
                body = response.json()
                assert body["detail"] and body["error"], response.text

        check()
        fuzzed.append(f"{operation.method.upper()} {operation.path}")
    assert len(fuzzed) >= 12, fuzzed
