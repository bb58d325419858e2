"""Every strategy passes the strategy contract on SQLite and PostgreSQL; the Optuna-backed ones also keep
their in-memory working copy and the database's record in step (constraints, failed writes, Optuna's own
trial format)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from nas.engine.strategies.base import Strategy, StrategyConfig, make_strategy, strategy_names
from search_spaces.errors import DatabaseUnavailableError
from nas.engine.strategies.testing import StrategyContract, toy_sample


@pytest.fixture(params=strategy_names())
def strategy_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def make(strategy_name: str, database_url: str) -> Callable[[str, int], Strategy]:
    def build(study_name: str, seed: int) -> Strategy:
        return make_strategy(strategy_name, StrategyConfig(
            study_name=study_name, storage_url=database_url, directions=("maximize", "minimize"), seed=seed,
            trials_budget=12, parallel=3))

    return build


@pytest.fixture()
def record_trials(database_url: str) -> Callable[[str], list[Any]]:
    import optuna

    def read(study_name: str) -> list[Any]:
        return optuna.load_study(study_name=study_name, storage=database_url).get_trials(deepcopy=False)

    return read


class TestStrategies(StrategyContract):
    pass


def test_the_latency_constraint_reaches_the_record(make: Callable[[str, int], Strategy],
                                                   record_trials: Callable[[str], list[Any]]) -> None:
    strategy = make("s", 0)
    (number, _), = strategy.ask_batch(1, toy_sample)
    strategy.tell(number, [0.5, 2.0], constraint=-1.5)
    (trial,) = record_trials("s")
    assert trial.system_attrs["constraints:latency_ms"] == -1.5


def test_a_failed_write_leaves_nothing_half_stored(make: Callable[[str, int], Strategy],
                                                   record_trials: Callable[[str], list[Any]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A database outage in the middle of an ask: DatabaseUnavailableError, and the next ask continues the
    numbering the database holds (the in-memory copy asked three trials the database never got)."""
    from sqlalchemy.exc import OperationalError

    import nas.engine.strategies.optuna_strategies as module

    strategy = make("s", 0)
    strategy.ask_batch(2, toy_sample)
    original = module.create_trials

    def unavailable(*args: object, **kwargs: object) -> object:
        raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(module, "create_trials", unavailable)
    with pytest.raises(DatabaseUnavailableError):
        strategy.ask_batch(3, toy_sample)
    monkeypatch.setattr(module, "create_trials", original)
    assert [number for number, _ in strategy.ask_batch(2, toy_sample)] == [2, 3]
    assert sorted(t.number for t in record_trials("s")) == [0, 1, 2, 3]
    assert sorted(strategy.open_numbers()) == [0, 1, 2, 3]


def test_batch_writes_are_what_optuna_writes(database_url: str) -> None:
    """`create_trials` and `finish_trial` store the same rows as Optuna's `RDBStorage` does
    (`create_new_trial(template_trial=...)`, then `set_trial_system_attr` and `set_trial_state_values`)."""
    import optuna

    from nas.engine.strategies.optuna_record import create_trials, finish_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    memory = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.NSGAIISampler(seed=0))
    trials = []
    for _ in range(3):
        trial = memory.ask()
        toy_sample(trial)
        trial.storage.set_trial_system_attr(trial._trial_id, "note", {"a": [1, 2.5, None]})
        trials.append(memory._storage.get_trial(trial._trial_id))
    storage = optuna.storages.RDBStorage(database_url)
    ours = optuna.create_study(study_name="ours", storage=storage, directions=["maximize", "minimize"])
    theirs = optuna.create_study(study_name="theirs", storage=storage, directions=["maximize", "minimize"])
    assert [number for number, _ in create_trials(storage, ours._study_id, trials)] == [0, 1, 2]
    for trial in trials:
        storage.create_new_trial(theirs._study_id, template_trial=trial)

    def fields(t: Any) -> tuple[Any, ...]:
        complete = t.datetime_complete and abs((t.datetime_complete - datetime.now()).total_seconds()) < 60
        return (t.number, t.state, t.params, t.distributions, t.system_attrs, t.values, t.datetime_start,
                t.datetime_complete is None or complete)

    assert [fields(t) for t in ours.get_trials()] == [fields(t) for t in theirs.get_trials()]

    outcomes = [(optuna.trial.TrialState.COMPLETE, [0.25, float("inf")], {"constraints:latency_ms": -0.5}),
                (optuna.trial.TrialState.FAIL, None, {}),
                (optuna.trial.TrialState.PRUNED, None, {"note": "changed"})]
    for (mine, other), (state, values, attrs) in zip(zip(ours.get_trials(), theirs.get_trials()), outcomes):
        assert finish_trial(storage, mine._trial_id, state=state, values=values, system_attrs=attrs,
                            replace=[key for key in attrs if key in mine.system_attrs])
        for key, value in attrs.items():
            storage.set_trial_system_attr(other._trial_id, key, value)
        storage.set_trial_state_values(other._trial_id, state, values)
    assert [fields(t) for t in ours.get_trials()] == [fields(t) for t in theirs.get_trials()]
    assert not finish_trial(storage, ours.get_trials()[0]._trial_id, state=optuna.trial.TrialState.FAIL,
                            values=None, system_attrs={})  # finished already: nothing written
    assert ours.get_trials()[0].state == optuna.trial.TrialState.COMPLETE
    with pytest.raises(ValueError, match="only running trials"):
        create_trials(storage, ours._study_id, [optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=[1.0, 2.0], params={}, distributions={})])


def test_the_study_carries_its_objective_names(strategy_name: str, database_url: str) -> None:
    """optuna-dashboard (and `optuna.load_study`) label the axes by the names stored with the study."""
    import optuna

    config = StrategyConfig(study_name="named", storage_url=database_url, directions=("maximize", "minimize"),
                            seed=0, trials_budget=4, metric_names=("accuracy", "latency_ms"))
    make_strategy(strategy_name, config)
    make_strategy(strategy_name, config)  # a resumed job finds them stored
    assert optuna.load_study(study_name="named", storage=database_url).metric_names == ["accuracy", "latency_ms"]


def test_the_private_optuna_parts_we_use_still_exist(sqlite_url: str) -> None:
    """`nas.engine.strategies.optuna_private` names every private part of Optuna hwnas uses; this fails when
    an Optuna release moves one, before a job does."""
    import optuna

    from nas.engine.strategies.optuna_private import frozen_trial_id, rdb_models, study_id, working_storage

    models = rdb_models()
    for name in ("StudyModel", "TrialModel", "TrialParamModel", "TrialSystemAttributeModel"):
        assert hasattr(models, name), name
    for column in ("trial_id", "number", "state", "study_id", "datetime_start"):
        assert column in models.TrialModel.__table__.c, column
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    frozen = working_storage(study).get_trial(
        working_storage(study).get_trial_id_from_study_id_trial_number(study_id(study), trial.number))
    assert frozen.number == trial.number
    stored = optuna.create_study(study_name="ids", storage=sqlite_url)
    stored.ask()
    (record,) = optuna.load_study(study_name="ids", storage=sqlite_url).get_trials(deepcopy=False)
    storage = optuna.storages.RDBStorage(sqlite_url)
    assert frozen_trial_id(record) == storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name("ids"), 0)


def test_evolution_breeds_from_the_best_feasible_trials(tmp_path: Any) -> None:
    """Maximise `ratio` where `kind == 'moe'` is infeasible: after its random population, evolution's children
    sit near the best feasible parents, where random search stays spread out."""
    import statistics

    def run(name: str) -> list[dict[str, Any]]:
        strategy = make_strategy(name, StrategyConfig(
            study_name=name, storage_url=f"sqlite:///{tmp_path / 'study.db'}", directions=("maximize", "minimize"),
            seed=3, trials_budget=100))
        archs = []
        for _ in range(60):
            ((number, arch),) = strategy.ask_batch(1, toy_sample)
            strategy.tell(number, [float(arch["ratio"]), float(arch["width"])],
                          constraint=1.0 if arch["kind"] == "moe" else -1.0)
            archs.append(arch)
        return archs

    evolved, random_ = run("evolution"), run("random")
    late = slice(40, 60)
    assert statistics.median(a["ratio"] for a in evolved[late]) > 0.85
    assert statistics.median(a["ratio"] for a in evolved[late]) > statistics.median(a["ratio"] for a in random_[late])
    assert sum(a["kind"] == "moe" for a in evolved[late]) < sum(a["kind"] == "moe" for a in random_[late])
