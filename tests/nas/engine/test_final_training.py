"""The one-shot job's final training: which candidates are trained on, with and without screening."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import update

from nas.db.models import JobRow
from nas.db.records import TrialRecord
from nas.db.storage import open_storage
from nas.engine.controller import Controller
from nas.engine.phases.final_training import inherited_choice
from nas.errors import SpecError
from nas.service import job_summary
from nas.settings import Settings
from search_spaces.arch import Arch
from tests.fakes import FakeDeviceRunner, fake_metric, feature_sum_factory, make_fake_evaluate
from tests.nas.engine.test_controller import make_spec, run
from workers.executors.in_process import InProcessExecutor
from workers.types import CandidateTask, EvalResult

SCREEN_STEPS, FINAL_STEPS = 3, 7


def steps_aware_evaluate(calls: list[tuple[int, int]]) -> Callable[[CandidateTask], EvalResult]:
    """Inherited scores (0 steps) rank archs one way; a few steps of training reverse that order (bits per
    char: lower is better), as the README's rank agreement shows inherited scores can mislead."""
    fake = make_fake_evaluate([])

    def evaluate(candidate: CandidateTask) -> EvalResult:
        calls.append((candidate.trial_number, candidate.train_steps))
        result = fake(candidate)
        inherited = fake_metric(Arch.from_dict(candidate.arch))
        metric = inherited if candidate.train_steps == 0 else 4.0 - inherited - candidate.train_steps / 100
        return dataclasses.replace(result, metric=metric, steps_done=candidate.train_steps)

    return evaluate


def one_shot_spec(corpus: Path, **search: int) -> object:
    return make_spec(corpus, strategy="evolution", latency_target_ms=2.0, budget={"trials": 12, "train_steps": 2},
                     search={"mode": "one-shot", "supernet_steps": 2, "final_candidates": 2,
                             "final_train_steps": FINAL_STEPS, **search})


def test_screening_trains_the_best_by_inherited_metric_briefly_then_the_best_of_them_fully(
        tmp_path: Path, corpus_file: Path, database_url: str) -> None:
    storage = open_storage(database_url)
    calls: list[tuple[int, int]] = []
    job_id, job = run(storage, tmp_path, one_shot_spec(corpus_file, screen_candidates=5, screen_steps=SCREEN_STEPS),
                      [], evaluate=steps_aware_evaluate(calls))
    assert job.state == "completed", job.message
    trials = {t.number: t for t in storage.trials(job_id)}
    inherited = {n: t for n, t in trials.items() if t.steps_done == 0}
    screened = sorted(n for n, steps in calls if steps == SCREEN_STEPS)
    final = sorted(n for n, steps in calls if steps == FINAL_STEPS)
    assert len(screened) == 5 and len(set(screened)) == 5 and len(final) == 2
    # the screened are the best five by inherited metric under the target, front members or not, each
    # measured on the device first
    pool = [trials[n] for n in screened]
    assert all(t.measured_latency_ms is not None and t.latency_ms <= 2.0 for t in pool)
    under = [t for t in trials.values() if t.latency_ms <= 2.0]
    assert len(under) > 5 and len(storage.front(job_id)) < 5  # the pool reaches beyond the front
    best = sorted(under, key=lambda t: (t.metrics or {}).get("inherited_bits_per_char", t.metric))[:5]
    assert screened == sorted(t.number for t in best)
    assert all(t.metrics["inherited_bits_per_char"] == fake_metric(Arch.from_dict(t.arch)) for t in pool)
    # the finalists are the best two by screened metric: here the *worst* two of the five by inherited metric
    by_inherited = sorted(pool, key=lambda t: t.metrics["inherited_bits_per_char"])
    assert final == sorted(t.number for t in by_inherited[-2:])
    for number in final:
        t = trials[number]
        assert t.steps_done == FINAL_STEPS and "screened_bits_per_char" in t.metrics
        assert t.metric == pytest.approx(4.0 - t.metrics["inherited_bits_per_char"] - FINAL_STEPS / 100)
    for number in set(screened) - set(final):  # screened, not a finalist: its screened figures, said so
        t = trials[number]
        assert t.steps_done == SCREEN_STEPS and t.metric == t.metrics["screened_bits_per_char"]
    assert inherited and all(n not in screened for n in inherited)
    checkpoint = job_summary(storage, job_id).checkpoint
    assert checkpoint is not None and checkpoint.trial in final  # exported from a fully trained finalist


def test_without_screening_the_best_by_inherited_metric_are_trained(tmp_path: Path, corpus_file: Path,
                                                                    sqlite_url: str) -> None:
    storage = open_storage(sqlite_url)
    calls: list[tuple[int, int]] = []
    spec = one_shot_spec(corpus_file, final_candidates=1)
    job_id, job = run(storage, tmp_path, spec, [], evaluate=steps_aware_evaluate(calls))
    assert job.state == "completed", job.message
    trials = {t.number: t for t in storage.trials(job_id)}
    (final,) = [n for n, steps in calls if steps == FINAL_STEPS]
    assert not [n for n, steps in calls if steps not in (0, FINAL_STEPS)]  # nothing screened
    under = [t for t in trials.values() if t.measured_latency_ms is not None and t.latency_ms <= 2.0]
    assert len(under) >= 2
    best = min(under, key=lambda t: (t.metrics or {}).get("inherited_bits_per_char", t.metric))
    assert final == best.number and trials[final].steps_done == FINAL_STEPS
    # after the job (the finalist's metric is now its final one) the choice is still the same: the benchmark's
    # screening ablation asks it this way
    chosen = inherited_choice(storage.trials(job_id, states=("complete",)), metric_name="bits_per_char",
                              target_ms=2.0, maximize_metric=False)
    assert chosen[0].number == final


def test_finalists_keep_their_best_weights_when_asked_and_screening_does_not(tmp_path: Path, corpus_file: Path,
                                                                            sqlite_url: str) -> None:
    """`search.final_eval_every_steps` reaches the finalists' training (not the short screening), and the step
    whose weights a finalist kept is stored with its figures."""
    storage = open_storage(sqlite_url)
    asked: dict[int, set[int]] = {}
    calls: list[tuple[int, int]] = []
    evaluate = steps_aware_evaluate(calls)

    def keeping(candidate: CandidateTask) -> EvalResult:
        asked.setdefault(candidate.train_steps, set()).add(candidate.keep_best_every_steps)
        result = evaluate(candidate)
        if candidate.keep_best_every_steps:
            return dataclasses.replace(result, extra={**result.extra, "kept_step": 4})
        return result

    spec = one_shot_spec(corpus_file, screen_candidates=3, screen_steps=SCREEN_STEPS, final_candidates=1,
                         final_eval_every_steps=2)
    job_id, job = run(storage, tmp_path, spec, [], evaluate=keeping)
    assert job.state == "completed", job.message
    assert asked == {0: {0}, SCREEN_STEPS: {0}, FINAL_STEPS: {2}}
    (final,) = [t for t in storage.trials(job_id) if t.steps_done == FINAL_STEPS]
    assert final.metrics["kept_step"] == 4
    assert all("kept_step" not in (t.metrics or {}) for t in storage.trials(job_id) if t.id != final.id)


def trial(number: int, *, latency_ms: float, metric: float, inherited: float | None = None) -> TrialRecord:
    return TrialRecord(id=100 + number, job_id=1, number=number, optuna_number=number, arch_hash=str(number),
                       arch={}, state="complete", predicted_latency_ms=latency_ms, predicted_latency_std_ms=None,
                       measured_latency_ms=None, metric=metric, params=None, train_loss=None,
                       metrics=None if inherited is None else {"inherited_accuracy": inherited}, worker=None,
                       attempts=1, weights_path=None, steps_done=None, rungs=None, error=None, created_at=None,
                       started_at=None, finished_at=None)


def test_the_unscreened_choice_ranks_the_front_of_inherited_figures_under_the_target() -> None:
    trials = [
        trial(0, latency_ms=5.0, metric=0.95, inherited=0.70),  # trained: its final figure does not count
        trial(1, latency_ms=4.0, metric=0.80),                  # the best inherited under the target
        trial(2, latency_ms=3.0, metric=0.75),                  # on the front, second
        trial(3, latency_ms=4.5, metric=0.74),                  # dominated by 1
        trial(4, latency_ms=9.0, metric=0.99),                  # over the target
    ]
    chosen = inherited_choice(trials, metric_name="accuracy", target_ms=6.0, maximize_metric=True)
    assert [t.number for t in chosen] == [1, 2]
    lower_is_better = inherited_choice(trials, metric_name="accuracy", target_ms=6.0, maximize_metric=False)
    assert [t.number for t in lower_is_better] == [0, 3, 2]  # where lower is better the front is another one


@pytest.mark.parametrize(("search", "words"), [
    ({"screen_candidates": 2}, "must be above search.final_candidates (2)"),
    ({"screen_candidates": 4, "screen_steps": FINAL_STEPS}, "must be below the final training's 7 steps"),
])
def test_screening_that_cannot_choose_is_refused_with_the_fix(corpus_file: Path, search: dict[str, int],
                                                              words: str) -> None:
    with pytest.raises(SpecError, match="search.screen") as refused:
        one_shot_spec(corpus_file, **search)
    assert words in str(refused.value)


def test_screening_on_a_standalone_search_is_refused(corpus_file: Path) -> None:
    with pytest.raises(SpecError, match="search.screen_candidates .* a standalone search trains every candidate"):
        make_spec(corpus_file, search={"mode": "standalone", "screen_candidates": 4})
    with pytest.raises(SpecError, match="search.final_eval_every_steps \\(50\\) applies to a one-shot"):
        make_spec(corpus_file, search={"mode": "standalone", "final_eval_every_steps": 50})


class Killed(BaseException):
    """The controller's process dying mid-phase (not an error a job records)."""


@pytest.mark.parametrize("killed_at", [(SCREEN_STEPS, 3), (FINAL_STEPS, 2)])
def test_a_resumed_job_screens_and_trains_nothing_twice(tmp_path: Path, corpus_file: Path, database_url: str,
                                                         killed_at: tuple[int, int]) -> None:
    """Killed at the third screening, or at the second final training: the resumed run trains only what the
    first did not record, and ends with the finalists an uninterrupted run chooses."""
    storage = open_storage(database_url)
    spec = one_shot_spec(corpus_file, screen_candidates=5, screen_steps=SCREEN_STEPS)
    uninterrupted: list[tuple[int, int]] = []
    run(storage, tmp_path / "whole", spec, [], evaluate=steps_aware_evaluate(uninterrupted))
    calls: list[tuple[int, int]] = []
    evaluate = steps_aware_evaluate(calls)
    steps, nth = killed_at

    def dies(candidate: CandidateTask) -> EvalResult:
        if candidate.train_steps == steps and sum(1 for _, s in calls if s == steps) == nth - 1:
            calls.append((candidate.trial_number, -1))
            raise Killed
        return evaluate(candidate)

    with pytest.raises(Killed):
        run(storage, tmp_path / "killed", spec, [], evaluate=dies)
    job_id = max(j.id for j in storage.list_jobs())
    with storage.session() as s:  # the dead controller's lease runs out
        s.execute(update(JobRow).where(JobRow.id == job_id).values(lease_expires_at=time.time() - 1))
    before = list(calls)
    settings = Settings(data_dir=tmp_path / "killed" / "data", executor="in-process", lease_ttl_s=5)
    job = Controller(storage, settings, executor_factory=lambda: InProcessExecutor(evaluate=evaluate),
                     latency_model_factory=feature_sum_factory, device_runner=FakeDeviceRunner()).run_job(job_id)
    assert job.state == "completed", job.message
    resumed = calls[len(before):]
    recorded = [c for c in before if c[1] in (SCREEN_STEPS, FINAL_STEPS)]
    assert recorded and not set(recorded) & set(resumed)  # nothing recorded before the kill ran again
    trained = [c for c in before + resumed if c[1] in (SCREEN_STEPS, FINAL_STEPS)]
    assert sorted(trained) == sorted(c for c in uninterrupted if c[1] in (SCREEN_STEPS, FINAL_STEPS))
