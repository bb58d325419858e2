"""Contract suites for executors and tasks, shipped for plug-in authors.

    from workers.testing import ExecutorContract, TaskContract

    class TestMyExecutor(ExecutorContract):
        @pytest.fixture()
        def executor(self): return MyExecutor()

    class TestMyTask(TaskContract):
        @pytest.fixture()
        def bound(self, tmp_path): return task_and_space(SPACE, SPACE_OPTIONS, TASK_SPEC)  # (task, space)
        @pytest.fixture()
        def arch(self, bound): return ...  # a small arch of that space

Needs pytest and torch.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest

from search_spaces.arch import Arch
from search_spaces.base import SearchSpace, get_space
from search_spaces.testing import SMALL_SPACE_OPTIONS
from workers.executors.base import Executor
from workers.tasks.base import Task, TrainingRun, task_objective
from workers.types import CandidateTask



def contract_candidates(folder: Path, corpus: Path) -> list[CandidateTask]:
    """Three candidates of a small sparse transformer: two equal ones that train, one that cannot be built."""
    space = get_space("sparse-transformer", SMALL_SPACE_OPTIONS)
    good = space.make_arch(d_model=16, layers=[{"attn_heads": 2, "ffn": {"kind": "moe", "experts": 2, "top_k": 1,
                                                                           "width": 16}}]).to_dict()
    bad = {**good, "config": {**good["config"], "d_model": 999}}
    return [CandidateTask(job_id=1, trial_number=n, space="sparse-transformer", space_options=SMALL_SPACE_OPTIONS,
                          arch=arch, task={"kind": "language-modeling", "train": str(corpus), "seq_len": 16},
                          train_steps=3, seed=0, artifact_dir=str(folder / f"t{n}"))
            for n, arch in enumerate([good, bad, good])]


class ExecutorContract:
    """Every executor passes this suite: each submitted candidate's result comes back, failures included,
    and the same candidate gives the same result wherever it ran. Provide an `executor` fixture."""

    @pytest.fixture()
    def contract_corpus(self, tmp_path: Path) -> Path:
        path = tmp_path / "contract-corpus.txt"
        path.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
        return path

    def test_returns_every_result_and_failures(self, executor: Executor, tmp_path: Path,
                                               contract_corpus: Path) -> None:
        for candidate in contract_candidates(tmp_path, contract_corpus):
            executor.submit(candidate)
        assert executor.trial_numbers() <= {0, 1, 2}
        results = {}
        while executor.in_flight:
            for result in executor.wait(timeout_s=120):
                results[result.trial_number] = result
        assert sorted(results) == [0, 1, 2]
        assert results[0].state == "complete" and results[2].state == "complete"
        assert results[0].metric == results[2].metric
        assert results[1].state == "failed" and "d_model" in (results[1].error or "")
        assert executor.slots >= 1 and executor.trial_numbers() == set()


class TaskContract:
    """Every task passes this suite. Provide fixtures `bound` (a task and the space it is bound to, as
    `workers.evaluate.task_and_space` gives them) and `arch` (a small arch of that space)."""

    def test_the_objective_is_known_from_the_spec_alone(self, bound: tuple[Task, SearchSpace]) -> None:
        task, _ = bound
        objective = task_objective(task.spec)
        assert (objective.metric_name, objective.direction) == (task.metric_name, task.direction)
        assert task.direction in ("minimize", "maximize")

    def test_a_trained_model_scores_no_worse_than_the_worst_metric(self, bound: tuple[Task, SearchSpace],
                                                                  arch: Arch) -> None:
        task, space = bound
        model = space.build(arch, seed=0)
        loss = task.train(model, steps=3, seed=0)
        metrics = task.evaluate_all(model)
        metric = metrics[task.metric_name]
        assert math.isfinite(loss) and math.isfinite(metric)
        worst = task.worst_metric()
        assert (metric >= worst) if task.direction == "maximize" else (metric <= worst)

    def test_training_continued_across_rungs_equals_training_in_one_go(self, bound: tuple[Task, SearchSpace],
                                                                      arch: Arch) -> None:
        """A trial trained in rungs (2 steps, then 4 more in what could be another process) ends with the
        weights of 6 steps at once: `TrainingRun` carries the schedule, optimiser and data order."""
        import torch

        task, space = bound
        whole = space.build(arch, seed=0)
        task.train(whole, steps=6, seed=3)
        first = space.build(arch, seed=0)
        run = TrainingRun(total_steps=6)
        task.train(first, steps=2, seed=3, run=run)
        resumed = space.build(arch, seed=0)  # as a new process would: the weights and the run's saved state only
        resumed.load_state_dict({name: tensor.clone() for name, tensor in first.state_dict().items()})
        run = TrainingRun(total_steps=6, start_step=run.start_step, state=copy.deepcopy(run.state))
        task.train(resumed, steps=4, seed=3, run=run)
        assert run.start_step == 6
        expected, got = whole.state_dict(), resumed.state_dict()
        assert all(torch.equal(expected[name], got[name]) for name in expected)

    def test_the_tokenizer_is_saved_with_a_checkpoint(self, bound: tuple[Task, SearchSpace], tmp_path: Path) -> None:
        task, _ = bound
        task.save_tokenizer(tmp_path / "export")
        assert any((tmp_path / "export").iterdir())
