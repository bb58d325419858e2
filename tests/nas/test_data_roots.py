"""A job spec sent to the server may name paths only inside the data roots: every trick is refused with
nothing stored, and a refusal reads the same whether the file exists or not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.nas.conftest import Service, auth, tiny_spec


def submit_train(api: Any, service: Service, train: str) -> Any:
    spec = tiny_spec(service.corpus, task={"kind": "language-modeling", "train": train, "seq_len": 16,
                                           "batch_size": 4})
    return api.post("/api/v1/jobs", json=spec, headers=auth(service, "submit"))


def refusal(answer: Any, path: str) -> str:
    """The refusal's words with the path itself taken out (to compare refusals of different paths)."""
    assert answer.status_code == 422, answer.text
    return answer.json()["detail"].replace(repr(path), "PATH")


@pytest.fixture()
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside every data root, holding a readable secret."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.txt").write_text("s3cr3t " * 2000, encoding="utf-8")
    return folder


def tricks(service: Service, outside: Path) -> dict[str, str]:
    root = service.corpus.parent
    (root / "escape").symlink_to(outside / "secret.txt")
    (root / "escape-dir").symlink_to(outside)
    fifo_outside = outside / "fifo"
    os.mkfifo(fifo_outside)
    return {
        "absolute": str(outside / "secret.txt"),
        "dot-dot": str(root / ".." / outside.name / "secret.txt"),
        "symlink out of a root": str(root / "escape"),
        "symlinked folder": str(root / "escape-dir" / "secret.txt"),
        "proc": "/proc/self/environ",
        "passwd": "/etc/passwd",
        "device": "/dev/zero",
        "fifo": str(fifo_outside),
        "the service's own database": str(service.settings.data_dir / "hwnas.db"),
    }


def test_path_tricks_are_refused_with_nothing_stored(service: Service, api: Any, outside: Path) -> None:
    service.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (service.settings.data_dir / "hwnas.db").write_bytes(b"x" * 100_000)  # inside the root, but private
    for what, path in tricks(service, outside).items():
        answer = submit_train(api, service, path)
        assert answer.status_code == 422, (what, answer.text)
        detail = answer.json()["detail"]
        assert "task.train" in detail and "data roots" in detail and "dataset" in detail, (what, detail)
        assert "bytes" not in detail and "does not exist" not in detail, (what, detail)
    assert service.storage.count_jobs() == 0


def test_a_refusal_does_not_tell_whether_the_file_exists(service: Service, api: Any, outside: Path) -> None:
    there, missing = str(outside / "secret.txt"), str(outside / "no-such-file.txt")
    assert refusal(submit_train(api, service, there), there) == refusal(submit_train(api, service, missing), missing)
    short = outside / "short.txt"  # too short for one sequence: the old check told its size
    short.write_text("x", encoding="utf-8")
    assert refusal(submit_train(api, service, str(short)), str(short)) == refusal(
        submit_train(api, service, missing), missing)
    assert service.storage.count_jobs() == 0


def test_inside_a_root_a_fifo_is_refused_and_a_file_accepted(service: Service, api: Any) -> None:
    fifo = service.corpus.parent / "pipe"
    os.mkfifo(fifo)
    answer = submit_train(api, service, str(fifo))  # must answer, not block on opening the pipe
    assert answer.status_code == 422 and "not a regular file" in answer.json()["detail"]
    linked = service.corpus.parent / "link-to-corpus.txt"
    linked.symlink_to(service.corpus)
    accepted = submit_train(api, service, str(linked))
    assert accepted.status_code == 201, accepted.text
    stored = service.storage.get_job(accepted.json()["job_id"]).spec["task"]["train"]
    assert stored == os.path.realpath(service.corpus)  # what was checked is what the job reads


def test_no_data_roots_means_no_paths(service: Service) -> None:
    from fastapi.testclient import TestClient

    from nas.api import create_app

    settings = service.settings.model_copy(update={"data_roots": ()})
    with TestClient(create_app(settings, storage=service.storage)) as client:
        answer = submit_train(client, service, str(service.corpus))
        assert answer.status_code == 422 and "data roots, HWNAS_DATA_ROOTS, are empty" in answer.json()["detail"]
        builtin = submit_train(client, service, "builtin:python-stdlib")
        assert builtin.status_code == 201, builtin.text


def test_server_only_fields_are_refused(service: Service, api: Any) -> None:
    spec = tiny_spec(service.corpus, space="pruned-bert", space_options={"teacher_dir": "/etc", "base_model": "/etc"},
                     task={"kind": "classification", "dataset": "glue", "tokenizer": "/usr/share"})
    answer = api.post("/api/v1/jobs", json=spec, headers=auth(service, "submit"))
    assert answer.status_code == 422
    problems = answer.json()["problems"]
    assert any(p.startswith("task.dataset: not accepted by the server") for p in problems), problems
    assert any(p.startswith("task.tokenizer: the server reads paths only inside") for p in problems), problems
    assert any(p.startswith("space_options.base_model: the server reads paths only inside") for p in problems)
    assert any(p.startswith("space_options.teacher_dir: set by the job's own preparation") for p in problems)
    assert service.storage.count_jobs() == 0


def test_the_local_cli_still_reads_the_users_own_files(tmp_path: Path, outside: Path) -> None:
    from nas.spec import parse_spec

    spec = parse_spec(tiny_spec(outside / "secret.txt"))  # no server, no roots: the user's own file
    assert spec.task.train == str(outside / "secret.txt")
