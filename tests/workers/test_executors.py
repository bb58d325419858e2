"""Every built-in executor passes the executor contract (`workers.testing`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.executors.base import Executor
from workers.executors.in_process import InProcessExecutor
from workers.testing import ExecutorContract, contract_candidates
from workers.types import CandidateTask


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
        executor.submit(contract_candidates(tmp_path, corpus_file)[0])
        (result,) = executor.wait(timeout_s=120)
        assert result.state == "failed" and "worker lost" in (result.error or "")
