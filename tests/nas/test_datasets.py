"""Datasets over HTTP: streamed upload with its limits and format checks (nothing stored on refusal),
one copy of the same bytes, deletion refused while a job uses them, and a job run on an uploaded corpus."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.nas.conftest import Service, auth, tiny_spec


def upload(api: Any, service: Service, data: bytes, *, name: str = "corpus", fmt: str = "text",
           filename: str = "corpus.txt", scope: str = "submit") -> Any:
    return api.post("/api/v1/datasets", files={"file": (filename, data, "application/octet-stream")},
                    data={"name": name, "format": fmt}, headers=auth(service, scope))


def stored_blobs(service: Service) -> list[Path]:
    folder = service.settings.artifacts_dir / "datasets"
    return sorted(p for p in folder.rglob("*") if p.is_file() and "locks" not in p.parts)


def nothing_stored(service: Service) -> bool:
    return service.storage.datasets.list()[0] == 0 and stored_blobs(service) == []


def test_upload_stores_a_checked_dataset_once_by_sha256(service: Service, api: Any) -> None:
    data = service.corpus.read_bytes()
    first = upload(api, service, data)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size_bytes"] == len(data)
    assert body["ref"] == f"dataset:sha256:{body['sha256']}" and body["created_by"] == "test submit"
    assert body["info"]["lines"] == data.count(b"\n") + 1 and body["info"]["filename"] == "corpus.txt"
    again = upload(api, service, data)  # same name, same bytes: the same dataset
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    other_name = upload(api, service, data, name="corpus-copy")
    assert other_name.status_code == 201
    assert len(stored_blobs(service)) == 1  # the same bytes are stored once
    clash = upload(api, service, b"other text", name="corpus")
    assert clash.status_code == 409 and "exists with other content" in clash.json()["detail"]
    listed = api.get("/api/v1/datasets", headers=auth(service, "read")).json()
    assert listed["total"] == 2 and {d["name"] for d in listed["items"]} == {"corpus", "corpus-copy"}
    one = api.get(f"/api/v1/datasets/{body['id']}", headers=auth(service, "read")).json()
    assert one == body
    assert upload(api, service, data, name="r", scope="read").status_code == 403


@pytest.mark.parametrize(("fmt", "data", "says"), [
    ("text", b"caf\xe9 au lait\n", "file: corpus.txt:1: not UTF-8 text"),
    ("text", b"", "is empty"),
    ("tsv", b"sentence\tlabel\ngood\t1\nbad one\n", "corpus.txt:3: expected 2 TSV fields"),
    ("jsonl", b'{"sentence": "a", "label": 1}\n[1, 2]\n', "corpus.txt:2: a JSONL line must be a JSON object"),
    ("csv", b"sentence,label\n", "holds no rows"),
    ("parquet", b"PAR1", "format: must be one of text, tsv, csv, jsonl"),
])
def test_a_wrong_format_is_refused_naming_file_and_line(service: Service, api: Any, fmt: str, data: bytes,
                                                        says: str) -> None:
    answer = upload(api, service, data, fmt=fmt)
    assert answer.status_code == 422, answer.text
    assert says in answer.json()["detail"]
    assert nothing_stored(service)


def test_bad_names_missing_fields_and_non_forms_are_refused(service: Service, api: Any) -> None:
    assert "name: a dataset name" in upload(api, service, b"text", name="../x").json()["detail"]
    no_file = api.post("/api/v1/datasets", files={"name": (None, "x"), "format": (None, "text")},
                       headers=auth(service, "submit"))
    assert no_file.status_code == 422 and "file: missing" in no_file.json()["detail"]
    not_form = api.post("/api/v1/datasets", data={"name": "x", "format": "text"}, headers=auth(service, "submit"))
    assert not_form.status_code == 422 and "not a multipart/form-data request" in not_form.json()["detail"]
    assert nothing_stored(service)


def test_upload_size_limit_holds_while_streaming(service: Service) -> None:
    from fastapi.testclient import TestClient

    from nas.api import create_app

    settings = service.settings.model_copy(update={"max_upload_bytes": 4096})
    with TestClient(create_app(settings, storage=service.storage)) as api:
        answer = upload(api, service, b"a" * 5000)
        assert answer.status_code == 413 and "over the upload limit of 4096 bytes" in answer.json()["detail"]

        def chunks() -> Any:  # no Content-Length: the limit must hold on the stream itself
            yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
            for _ in range(20):
                yield b"z" * 1000
            yield b'\r\n--B--\r\n'

        streamed = api.post("/api/v1/datasets", content=chunks(),
                            headers={**auth(service, "submit"), "Content-Type": "multipart/form-data; boundary=B"})
        assert streamed.status_code == 413
        assert upload(api, service, b"a" * 4000).status_code == 201  # under the limit, a file larger than the
        # JSON body limit (settings.max_body_bytes) would still be accepted
    big = upload_through(service, b"word " * 20_000)  # 100 kB, over the 64 kB body limit of JSON requests
    assert big.status_code == 201


def upload_through(service: Service, data: bytes) -> Any:
    from fastapi.testclient import TestClient

    with TestClient(service.app()) as api:
        return upload(api, service, data, name="big")


def test_a_truncated_upload_stores_nothing(service: Service, api: Any) -> None:
    body = (b'--B\r\nContent-Disposition: form-data; name="name"\r\n\r\ncut\r\n'
            b'--B\r\nContent-Disposition: form-data; name="format"\r\n\r\ntext\r\n'
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhalf of the te')
    answer = api.post("/api/v1/datasets", content=body,
                      headers={**auth(service, "submit"), "Content-Type": "multipart/form-data; boundary=B"})
    assert answer.status_code == 422 and "truncated" in answer.json()["detail"]
    assert nothing_stored(service)


def test_a_job_on_an_uploaded_dataset_runs_end_to_end_and_pins_it(service: Service, api: Any) -> None:
    dataset = upload(api, service, service.corpus.read_bytes(), name="words").json()
    spec = tiny_spec(service.corpus, task={"kind": "language-modeling", "train": "dataset:words", "seq_len": 16,
                                           "batch_size": 4})
    answer = api.post("/api/v1/jobs", json=spec, headers=auth(service, "submit"))
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    assert answer.json()["spec"]["task"]["train"] == dataset["ref"]  # pinned to its content
    refused = api.delete(f"/api/v1/datasets/{dataset['id']}", headers=auth(service, "submit"))
    assert refused.status_code == 409 and f"job(s) {job_id}" in refused.json()["detail"]
    runner = service.runner()
    runner.start()
    try:
        job = _wait(api, service, job_id)
    finally:
        runner.stop(timeout_s=10)
    assert job["state"] == "completed", job["message"]
    data_info = service.storage.get_job(job_id).data_info
    assert data_info["train_bytes"] + data_info["validation_bytes"] == dataset["size_bytes"]
    assert job["checkpoint"] is not None
    deleted = api.delete(f"/api/v1/datasets/{dataset['id']}", headers=auth(service, "submit"))
    assert deleted.status_code == 200
    assert api.get(f"/api/v1/datasets/{dataset['id']}", headers=auth(service, "read")).status_code == 404
    assert len(stored_blobs(service)) == 1  # the finished job still refers to its bytes (its exports need them)
    unknown = api.post("/api/v1/jobs", json=spec, headers=auth(service, "submit"))
    assert unknown.status_code == 422 and "no dataset named 'words'" in unknown.json()["detail"]


def test_a_dataset_of_the_wrong_kind_for_the_task_is_refused(service: Service, api: Any) -> None:
    upload(api, service, b"sentence\tlabel\ngood\t1\n", name="table", fmt="tsv")
    spec = tiny_spec(service.corpus, task={"kind": "language-modeling", "train": "dataset:table"})
    answer = api.post("/api/v1/jobs", json=spec, headers=auth(service, "submit"))
    assert answer.status_code == 422 and "dataset 'table' is tsv" in answer.json()["detail"]
    assert service.storage.count_jobs() == 0


def test_deleting_an_unused_dataset_removes_its_bytes(service: Service, api: Any) -> None:
    dataset = upload(api, service, b"some text\n").json()
    assert api.delete(f"/api/v1/datasets/{dataset['id']}", headers=auth(service, "read")).status_code == 403
    assert api.delete(f"/api/v1/datasets/{dataset['id']}", headers=auth(service, "submit")).status_code == 200
    assert nothing_stored(service)
    assert api.delete(f"/api/v1/datasets/{dataset['id']}", headers=auth(service, "submit")).status_code == 404


def _wait(api: Any, service: Service, job_id: int, timeout_s: float = 60) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.get(f"/api/v1/jobs/{job_id}", headers=auth(service, "read")).json()
        if job["state"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")
