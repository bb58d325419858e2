"""The executor contract: every executor returns each submitted candidate's result, failures included."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from search_spaces.base import get_space
from tests.conftest import TINY_SPACE_OPTIONS
from workers.executors.base import Executor
from workers.executors.in_process import InProcessExecutor
from workers.types import CandidateTask


def candidates(tmp_path: Path, corpus: Path) -> list[CandidateTask]:
    space = get_space("sparse-transformer", TINY_SPACE_OPTIONS)
    good = space.make_arch(d_model=16, layers=[{"attn_heads": 2, "ffn": {"kind": "moe", "experts": 2, "top_k": 1,
                                                                           "width": 16}}]).to_dict()
    bad = {**good, "config": {**good["config"], "d_model": 999}}
    return [CandidateTask(job_id=1, trial_number=n, space="sparse-transformer", space_options=TINY_SPACE_OPTIONS,
                          arch=arch, task={"kind": "language-modeling", "train": str(corpus), "seq_len": 16},
                          train_steps=3, seed=0, artifact_dir=str(tmp_path / f"t{n}"))
            for n, arch in enumerate([good, bad, good])]


class ExecutorContract:
    def test_returns_every_result_and_failures(self, executor: Executor, tmp_path: Path, corpus_file: Path) -> None:
        for c in candidates(tmp_path, corpus_file):
            executor.submit(c)
        results = {}
        while executor.in_flight:
            for r in executor.wait(timeout_s=120):
                results[r.trial_number] = r
        assert sorted(results) == [0, 1, 2]
        assert results[0].state == "complete" and results[2].state == "complete"
        assert results[0].metric == results[2].metric
        assert results[1].state == "failed" and "d_model" in (results[1].error or "")
        assert executor.slots >= 1


class TestInProcessExecutor(ExecutorContract):
    @pytest.fixture()
    def executor(self) -> Executor:
        return InProcessExecutor()


def _crash(candidate: CandidateTask) -> None:
    os._exit(1)


@pytest.mark.ray
@pytest.mark.slow
class TestRayExecutor(ExecutorContract):
    @pytest.fixture(scope="class")
    def ray_cluster(self) -> Iterator[None]:
        from workers.executors.ray_executor import ensure_ray, import_ray

        ensure_ray(address=None, num_cpus=2)
        ray = import_ray()
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        yield
        ray.shutdown()

    @pytest.fixture()
    def executor(self, ray_cluster: None) -> Executor:
        from workers.executors.ray_executor import RayExecutor

        return RayExecutor(slots=2)

    def test_a_dead_worker_is_a_failed_trial(self, ray_cluster: None, tmp_path: Path, corpus_file: Path) -> None:
        from workers.executors.ray_executor import RayExecutor, import_ray

        executor = RayExecutor(slots=2)
        executor._remote = import_ray().remote(num_cpus=1, max_retries=0)(_crash)
        executor.submit(candidates(tmp_path, corpus_file)[0])
        (result,) = executor.wait(timeout_s=120)
        assert result.state == "failed" and "worker lost" in (result.error or "")
