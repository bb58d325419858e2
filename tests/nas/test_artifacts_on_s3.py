"""The service with its artifacts on S3-compatible object storage (a local moto server): the API, the
controller and the workers share no folder. Between every step below the local artifacts folder is wiped,
as if each step ran on another machine; what a step needs comes from the bucket."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from nas.settings import Settings
from tests.nas.conftest import Service, auth, tiny_spec

pytestmark = [pytest.mark.s3, pytest.mark.slow]


@pytest.fixture()
def s3_service(service: Service, s3_bucket) -> Service:  # type: ignore[no-untyped-def]
    url, options = s3_bucket
    service.settings = service.settings.model_copy(update={"artifacts_url": url, "artifacts_options": options})
    return service


def _bucket_keys(service: Service) -> list[str]:
    import s3fs

    settings = service.settings
    fs = s3fs.S3FileSystem(**settings.artifacts_options)
    fs.invalidate_cache()
    prefix = settings.artifacts_url.removeprefix("s3://")  # type: ignore[union-attr]
    return sorted(name[len(prefix) + 1:] for name in fs.find(prefix))


def _wipe(service: Service) -> None:
    shutil.rmtree(service.settings.artifacts_dir, ignore_errors=True)


def test_a_job_runs_and_its_checkpoint_downloads_with_no_shared_folder(s3_service: Service) -> None:
    from fastapi.testclient import TestClient

    from nas.runner import JobRunner
    from nas.spec import parse_spec
    from nas.service import submit_job
    from tests.fakes import FakeDeviceRunner, feature_sum_factory
    from workers.executors.in_process import InProcessExecutor

    service = s3_service
    data = service.corpus.read_bytes()
    with TestClient(service.app()) as api:
        uploaded = api.post("/api/v1/datasets", files={"file": ("corpus.txt", data, "text/plain")},
                            data={"name": "corpus", "format": "text"}, headers=auth(service, "submit"))
        assert uploaded.status_code == 201, uploaded.text
    sha = hashlib.sha256(data).hexdigest()
    assert f"datasets/sha256/{sha}" in _bucket_keys(service)
    _wipe(service)  # the controller's machine never saw the upload

    spec = tiny_spec(service.corpus, budget={"trials": 4, "train_steps": 2}, latency_target_ms=100.0)
    spec["task"]["train"] = "dataset:corpus"
    job_id = submit_job(service.storage, parse_spec(spec))
    runner = JobRunner(service.storage, service.settings, executor_factory=lambda: InProcessExecutor(),
                       latency_model_factory=feature_sum_factory, device_runner=FakeDeviceRunner())
    job = runner.controller.run_job(job_id)
    assert job.state == "completed", job.message
    keys = _bucket_keys(service)
    checkpoints = service.storage.checkpoints(job_id)
    assert len(checkpoints) == 1
    archive = Path(checkpoints[0].archive_path)
    assert f"job-{job_id}/{archive.name}" in keys
    trials = [t for t in service.storage.trials(job_id, states=("complete",))]
    assert all(f"job-{job_id}/trial-{t.number}/weights.safetensors" in keys for t in trials)

    _wipe(service)  # the API's machine: nothing of the job on its disk
    with TestClient(service.app()) as api:
        got = api.get(f"/api/v1/jobs/{job_id}/checkpoints/{archive.name}", headers=auth(service, "read"))
        assert got.status_code == 200, got.text
        assert hashlib.sha256(got.content).hexdigest() == checkpoints[0].sha256
        other = next(t for t in trials if t.id != checkpoints[0].trial_id)
        _wipe(service)
        exported = api.post(f"/api/v1/jobs/{job_id}/checkpoints", json={"trial": other.number},
                            headers=auth(service, "submit"))  # its weights come from the bucket
        assert exported.status_code == 201, exported.text
    assert f"job-{job_id}/checkpoint-trial-{other.number}.tar.gz" in _bucket_keys(service)


def test_a_dataset_deleted_leaves_the_bucket(s3_service: Service) -> None:
    from fastapi.testclient import TestClient

    service = s3_service
    with TestClient(service.app()) as api:
        uploaded = api.post("/api/v1/datasets", files={"file": ("c.txt", b"some text\n" * 50, "text/plain")},
                            data={"name": "gone", "format": "text"}, headers=auth(service, "submit")).json()
        assert any(key.startswith("datasets/sha256/") for key in _bucket_keys(service))
        deleted = api.delete(f"/api/v1/datasets/{uploaded['id']}", headers=auth(service, "submit"))
        assert deleted.status_code == 200, deleted.text
    assert not any(key.startswith("datasets/sha256/") for key in _bucket_keys(service))


@pytest.mark.parametrize(("env", "message"), [
    ({"HWNAS_ARTIFACTS_URL": "/srv/artifacts"}, "must be an object-store URL"),
    ({"HWNAS_ARTIFACTS_URL": "nosuch://bucket"}, "must be an object-store URL"),
    ({"HWNAS_ARTIFACTS_URL": "s3://b", "HWNAS_ARTIFACTS_OPTIONS": "{not json"}, "must be a JSON object"),
    ({"HWNAS_ARTIFACTS_URL": "s3://b", "HWNAS_ARTIFACTS_OPTIONS": '{"secret": "x"}'}, "look like credentials"),
    ({"HWNAS_ARTIFACTS_URL": "s3://AKIA:s3cr3t@bucket/p"}, "holds credentials"),
])
def test_bad_artifact_settings_name_the_variable_and_the_fix(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                             message: str) -> None:
    from pydantic import ValidationError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_settings_read_the_store_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWNAS_ARTIFACTS_URL", "s3://bucket/prefix/")
    monkeypatch.setenv("HWNAS_ARTIFACTS_OPTIONS", '{"endpoint_url": "http://127.0.0.1:9000"}')
    location: Any = Settings().artifact_location()
    assert location.url == "s3://bucket/prefix" and location.options == {"endpoint_url": "http://127.0.0.1:9000"}


def test_a_teacher_prepared_by_one_controller_is_found_by_another(
        sentiment_files: tuple[Path, Path], tiny_bert_dir: Path, tmp_path: Path, sqlite_url: str,
        s3_bucket) -> None:  # type: ignore[no-untyped-def]
    """pruned-bert: the second job runs on a machine whose artifacts folder is empty; it finds the fine-tuned
    teacher (and its importance scores) in the bucket instead of training it again, and its workers fetch them."""
    from nas.db.storage import open_storage
    from nas.engine.controller import Controller
    from nas.service import submit_job
    from tests.conftest import fast_settings
    from tests.nas.test_pruned_bert_search import spec_for
    from workers.executors.in_process import InProcessExecutor

    url, options = s3_bucket
    storage = open_storage(sqlite_url)
    settings = fast_settings(data_dir=tmp_path / "data", executor="in-process", artifacts_url=url,
                             artifacts_options=options)
    controller = Controller(storage, settings, executor_factory=InProcessExecutor)
    first = controller.run_job(submit_job(storage, spec_for(sentiment_files, tiny_bert_dir,
                                                            budget={"trials": 2, "train_steps": 2})))
    assert first.state == "completed", first.message
    shutil.rmtree(settings.artifacts_dir)
    second = controller.run_job(submit_job(storage, spec_for(sentiment_files, tiny_bert_dir,
                                                             budget={"trials": 2, "train_steps": 2})))
    assert second.state == "completed", second.message
    assert second.preparation["options"] == first.preparation["options"]
    # trained once: the second job's baseline is the first one's teacher, to the last digit of its timing
    assert second.preparation["baseline"]["teacher_train_s"] == first.preparation["baseline"]["teacher_train_s"]
    assert storage.checkpoints(second.id)


def test_an_early_stopped_trial_leaves_no_superseded_rung_in_the_bucket(s3_service: Service) -> None:
    """Rungs save their weights by step; once a trial's next rung is recorded, the earlier rung's files go from
    the bucket as from the disk."""
    from nas.runner import JobRunner
    from nas.service import submit_job
    from nas.spec import parse_spec
    from tests.fakes import FakeDeviceRunner, feature_sum_factory
    from workers.executors.in_process import InProcessExecutor

    service = s3_service
    spec = tiny_spec(service.corpus, budget={"trials": 6, "train_steps": 8, "min_train_steps": 2,
                                             "reduction_factor": 2}, latency_target_ms=100.0)
    job_id = submit_job(service.storage, parse_spec(spec))
    runner = JobRunner(service.storage, service.settings, executor_factory=lambda: InProcessExecutor(),
                       latency_model_factory=feature_sum_factory, device_runner=FakeDeviceRunner())
    assert runner.controller.run_job(job_id).state == "completed"
    keys = [k for k in _bucket_keys(service) if k.startswith(f"job-{job_id}/trial-")]
    by_trial: dict[str, list[str]] = {}
    for key in keys:
        by_trial.setdefault(key.split("/")[1], []).append(key.split("/")[2])
    finished = {t: files for t, files in by_trial.items() if "weights.safetensors" in files}
    assert finished, by_trial  # some trial ran every rung
    for files in finished.values():  # its earlier rungs' weights and states are gone
        assert files == ["weights.safetensors"], files
