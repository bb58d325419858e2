"""The contract every search strategy passes, shipped for plug-in authors.

    from nas.engine.strategies.testing import StrategyContract

    class TestMyStrategy(StrategyContract):
        @pytest.fixture()
        def make(self, database_url): ...          # (study name, seed) -> a Strategy over that database
        @pytest.fixture()
        def record_trials(self, database_url): ... # study name -> Optuna's FrozenTrials in that database

Needs pytest and optuna.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MakeStrategy = Callable[[str, int], Any]  # (study name, seed) -> a Strategy over the test's database
RecordTrials = Callable[[str], list[Any]]  # study name -> the trials the database holds (Optuna FrozenTrials)


def toy_sample(trial: object) -> dict[str, object]:
    """A small mixed search space, sampled the way spaces sample (suggest_* on the strategy's trial)."""
    return {"width": trial.suggest_int("width", 1, 64, log=True),  # type: ignore[attr-defined]
            "kind": trial.suggest_categorical("kind", ["dense", "moe", "none"]),  # type: ignore[attr-defined]
            "ratio": trial.suggest_float("ratio", 0.0, 1.0)}  # type: ignore[attr-defined]


class StrategyContract:
    """Every strategy passes this suite. Provide fixtures `make` (a `MakeStrategy` over one database) and
    `record_trials` (a `RecordTrials` reading that database)."""

    def test_asks_a_batch_and_stores_it_before_returning(self, make: MakeStrategy,
                                                         record_trials: RecordTrials) -> None:
        strategy = make("s", 0)
        asked = strategy.ask_batch(4, toy_sample)
        assert [number for number, _ in asked] == [0, 1, 2, 3]
        stored = {t.number: t for t in record_trials("s")}
        assert sorted(stored) == [0, 1, 2, 3]
        for number, arch in asked:
            assert stored[number].state.name == "RUNNING"
            assert stored[number].params == arch

    def test_tells_reach_the_database(self, make: MakeStrategy, record_trials: RecordTrials) -> None:
        strategy = make("s", 0)
        asked = [number for number, _ in strategy.ask_batch(3, toy_sample)]
        strategy.tell(asked[0], [0.5, 2.0], constraint=-1.0)
        strategy.tell_failed(asked[1])
        strategy.tell_stopped(asked[2])
        strategy.tell(asked[0], [0.9, 9.0], constraint=5.0)  # a second tell changes nothing
        stored = {t.number: t for t in record_trials("s")}
        assert stored[asked[0]].state.name == "COMPLETE" and stored[asked[0]].values == [0.5, 2.0]
        assert stored[asked[1]].state.name == "FAIL" and stored[asked[2]].state.name == "PRUNED"
        assert strategy.open_numbers() == []

    def test_a_new_object_resumes_the_study(self, make: MakeStrategy, record_trials: RecordTrials) -> None:
        first = make("s", 0)
        asked = [number for number, _ in first.ask_batch(3, toy_sample)]
        first.tell(asked[0], [0.1, 1.0], constraint=0.0)
        second = make("s", 0)
        assert sorted(second.open_numbers()) == asked[1:]
        second.tell_failed(asked[1])
        assert [number for number, _ in second.ask_batch(2, toy_sample)] == [3, 4]
        assert sorted(t.number for t in record_trials("s")) == [0, 1, 2, 3, 4]

    def test_same_seed_same_proposals(self, make: MakeStrategy) -> None:
        def run(study: str, seed: int) -> list[dict[str, object]]:
            strategy = make(study, seed)
            archs = []
            for round_ in range(4):
                batch = strategy.ask_batch(3, toy_sample)
                for number, arch in batch:
                    strategy.tell(number, [float(arch["ratio"]), float(arch["width"])], constraint=float(round_ - 2))
                    archs.append(arch)
            return archs

        assert run("a", 1) == run("b", 1)
        assert run("c", 1) != run("d", 2)
