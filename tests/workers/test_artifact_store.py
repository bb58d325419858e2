"""The artifact store against a local S3 server (moto): two processes with their own artifacts folders and no
shared filesystem see each other's files through the bucket, and a worker needs nothing on its disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from search_spaces.errors import ArtifactStoreError
from tests.conftest import TINY_SPACE_OPTIONS
from workers.artifact_store import ArtifactLocation, ArtifactStore

pytestmark = pytest.mark.s3


def _store(folder: Path, bucket: tuple[str, dict[str, Any]]) -> ArtifactStore:
    url, options = bucket
    folder.mkdir(parents=True, exist_ok=True)
    return ArtifactStore(ArtifactLocation(local_dir=str(folder), url=url, options=options))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_pushed_by_one_process_is_pulled_by_another(
        tmp_path: Path, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    here, there = _store(tmp_path / "a", s3_bucket), _store(tmp_path / "b", s3_bucket)
    teacher = here.local_dir / "cache" / "teachers" / "k1"
    teacher.mkdir(parents=True)
    (teacher / "teacher.safetensors").write_bytes(b"w" * 1000)
    (teacher / "teacher.json").write_text('{"metric": 0.9}')
    (teacher / "teacher.safetensors.tmp").write_bytes(b"half")  # staging files never travel
    supernet = here.local_dir / "cache" / "supernet-abc"
    supernet.mkdir()
    (supernet / "supernet.safetensors").write_bytes(b"s" * 10)
    here.push(here.local_dir / "cache")
    assert there.pull(there.local_dir / "cache", exclude=("supernet-*",))
    assert _files(there.local_dir) == {"cache/teachers/k1/teacher.json": b'{"metric": 0.9}',
                                       "cache/teachers/k1/teacher.safetensors": b"w" * 1000}
    assert there.pull(there.local_dir / "cache" / "supernet-abc" / "supernet.safetensors")
    assert (there.local_dir / "cache" / "supernet-abc" / "supernet.safetensors").read_bytes() == b"s" * 10
    assert not there.pull(there.local_dir / "cache" / "supernet-missing")  # nothing there: False, nothing made
    assert not (there.local_dir / "cache" / "supernet-missing").exists()


def test_a_file_changed_in_place_is_pulled_again_only_when_asked(
        tmp_path: Path, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    here, there = _store(tmp_path / "a", s3_bucket), _store(tmp_path / "b", s3_bucket)
    progress = here.local_dir / "cache" / "supernet-x" / "progress.json"
    progress.parent.mkdir(parents=True)
    progress.write_text('{"step": 1}')
    here.push(progress)
    there.pull(there.local_dir / "cache" / "supernet-x" / "progress.json")
    progress.write_text('{"step": 2}')  # the same size: only `overwrite` sees the change
    here.push(progress)
    seen = there.local_dir / "cache" / "supernet-x" / "progress.json"
    there.pull(seen)
    assert seen.read_text() == '{"step": 1}'
    there.pull(seen, overwrite=True)
    assert seen.read_text() == '{"step": 2}'
    here.delete(progress)
    assert not there.pull(seen, overwrite=True)


def test_paths_outside_the_artifacts_folder_are_left_alone(
        tmp_path: Path, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    store = _store(tmp_path / "a", s3_bucket)
    outside = tmp_path / "data.txt"
    outside.write_text("user data")
    store.push(outside)
    assert store.key(outside) is None and store.pull(outside)  # exists locally; never uploaded
    store.pull_referenced({"train": str(outside), "n": 3, "paths": [str(tmp_path / "nope")]})
    assert not (tmp_path / "nope").exists()


def test_credentials_in_the_options_are_refused() -> None:
    with pytest.raises(ValueError, match="look like credentials.*AWS_ACCESS_KEY_ID"):
        ArtifactLocation(local_dir="/tmp/x", url="s3://b", options={"key": "AKIA", "secret": "s"})


def test_an_unreachable_store_is_an_artifact_store_error_naming_the_fix(tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    store = ArtifactStore(ArtifactLocation(local_dir=str(tmp_path), url="s3://bucket/p",
                                           options={"endpoint_url": "http://127.0.0.1:9",
                                                    "config_kwargs": {"retries": {"max_attempts": 1},
                                                                      "connect_timeout": 1}}))
    with pytest.raises(ArtifactStoreError, match=r"s3://bucket/p: could not pull 'x\.bin'.*HWNAS_ARTIFACTS_URL"):
        store.pull(tmp_path / "x.bin")


def test_a_worker_with_an_empty_disk_pulls_what_its_task_names_and_pushes_its_weights(
        tmp_path: Path, s3_bucket, corpus_file: Path) -> None:  # type: ignore[no-untyped-def]
    """The controller's machine holds the dataset and the supernet; the worker's artifacts folder is empty
    (another machine): it fetches both from the bucket, and the weights it trains reach the bucket."""
    import shutil

    from search_spaces.base import random_archs
    from workers.evaluate import evaluate_candidate, task_and_space
    from workers.supernet_training import SupernetTask, run_supernet_task
    from workers.types import CandidateTask

    controller = _store(tmp_path / "artifacts", s3_bucket)
    blob = controller.local_dir / "datasets" / "sha256" / "abc"
    blob.parent.mkdir(parents=True)
    shutil.copy(corpus_file, blob)
    controller.push(blob)
    task_spec = {"kind": "language-modeling", "train": str(blob), "seq_len": 16, "batch_size": 8}
    location = controller.location.to_dict()
    supernet = run_supernet_task(SupernetTask(
        space="sparse-transformer", space_options=TINY_SPACE_OPTIONS, task=task_spec, steps=3, seed=3,
        cache_dir=str(controller.local_dir / "cache"), checkpoint_every_s=0.0, artifacts=location))
    _, space = task_and_space("sparse-transformer", TINY_SPACE_OPTIONS, task_spec)
    (arch,) = random_archs(space, count=1, seed=5)
    shutil.rmtree(controller.local_dir)  # the worker's machine: nothing on its disk
    trial_dir = controller.local_dir / "job-1" / "trial-0"
    result = evaluate_candidate(CandidateTask(
        job_id=1, trial_number=0, space="sparse-transformer", space_options=TINY_SPACE_OPTIONS, arch=arch.to_dict(),
        task=task_spec, train_steps=2, seed=3, artifact_dir=str(trial_dir), supernet_path=supernet.path,
        artifacts=location))
    assert result.state == "complete", result.error
    shutil.rmtree(controller.local_dir)  # back on the controller's machine, which never saw the weights
    assert controller.pull(result.weights_path or "")
    assert Path(result.weights_path or "").stat().st_size > 0
    # a second run of the supernet task elsewhere finds it finished in the bucket: no training
    again = run_supernet_task(SupernetTask(
        space="sparse-transformer", space_options=TINY_SPACE_OPTIONS, task=task_spec, steps=3, seed=3,
        cache_dir=str(controller.local_dir / "cache"), checkpoint_every_s=0.0, artifacts=location))
    assert again.cached and again.path == supernet.path


def test_a_supernet_stopped_on_one_node_resumes_on_another(
        tmp_path: Path, s3_bucket, corpus_file: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from workers.supernet_training import SupernetTask, run_supernet_task

    store = _store(tmp_path / "artifacts", s3_bucket)

    def task() -> SupernetTask:
        return SupernetTask(space="sparse-transformer", space_options=TINY_SPACE_OPTIONS,
                            task={"kind": "language-modeling", "train": str(corpus_file), "seq_len": 16,
                                  "batch_size": 8},
                            steps=6, seed=3, cache_dir=str(store.local_dir / "cache"), checkpoint_every_s=0.0,
                            artifacts=store.location.to_dict())

    steps_seen: list[int] = []
    with pytest.raises(InterruptedError):
        run_supernet_task(task(), progress=lambda step, total, loss: steps_seen.append(step),
                          should_stop=lambda: len(steps_seen) >= 3)
    shutil.rmtree(store.local_dir)  # the node is gone with its disk
    resumed = run_supernet_task(task())
    assert resumed.resumed_from_step == 3 and not resumed.cached
