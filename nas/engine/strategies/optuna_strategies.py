"""Strategies backed by Optuna samplers, with the study in the service's own database (ask/tell)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from nas.engine.strategies.base import Sampled, Strategy, StrategyConfig, register_strategy
from nas.engine.strategies.optuna_private import frozen_trial_id, study_id, working_storage
from nas.engine.strategies.optuna_record import create_trials, finish_trial
from search_spaces.errors import DatabaseUnavailableError, StorageError

logger = logging.getLogger(__name__)
_MISSING = object()


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Optuna's storage errors as hwnas's: a lost connection is `DatabaseUnavailableError` (retry later)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    from nas.db.storage import is_disconnect

    try:
        yield
    except (optuna.exceptions.StorageInternalError, SQLAlchemyError) as exc:
        cause: BaseException = exc
        while not isinstance(cause, SQLAlchemyError) and cause.__cause__ is not None:
            cause = cause.__cause__
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(cause, SQLAlchemyError) and is_disconnect(cause):
            raise DatabaseUnavailableError(f"database unavailable to the strategy: {text}") from exc
        raise StorageError(f"the strategy's study storage failed: {text}") from exc


class OptunaStrategy(Strategy):
    """An Optuna sampler over two copies of one study: a working copy in memory, and the record in the
    service's database (RDB storage, which `optuna-dashboard` reads and a resumed job reloads).

    Sampling and telling run against the in-memory copy; each batch of proposed trials then reaches the
    record in one transaction with all their parameters (`optuna_record.create_trials`), and each tell in
    one (`optuna_record.finish_trial`). Asking Optuna's RDB storage directly costs a commit per suggested
    parameter and a read of the study's trials per ask. The controller is its job's only writer (lease),
    so the copy cannot miss another writer's trials; after any failed write it is rebuilt from the record
    before its next use.
    """

    def __init__(self, config: StrategyConfig) -> None:
        import optuna

        super().__init__(config)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}  # reconnect after a database restart
        if config.storage_url.startswith("sqlite"):
            engine_kwargs["connect_args"] = {"timeout": 30}
        with storage_errors():
            self.storage = optuna.storages.RDBStorage(config.storage_url, engine_kwargs=engine_kwargs)
            if config.storage_url.startswith("sqlite"):
                from nas.db.engine import sqlite_pragmas

                sqlite_pragmas(self.storage.engine)  # WAL without an fsync per commit
                self.storage.engine.dispose()
            record = optuna.create_study(study_name=config.study_name, storage=self.storage,
                                         directions=list(config.directions), load_if_exists=True)
            if config.metric_names and record.metric_names != list(config.metric_names):
                with warnings.catch_warnings():  # set_metric_names is marked experimental
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    record.set_metric_names(list(config.metric_names))
        self._record_study_id: int = self.storage.get_study_id_from_name(config.study_name)
        self._record_ids: dict[int, int] = {}  # trial number -> the record's trial id
        self._recorded_attrs: dict[int, dict[str, Any]] = {}  # system attrs the record holds, per open trial
        self.study: Any = None  # the in-memory working copy; None until loaded or after a failed write

    def make_sampler(self) -> Any:
        raise NotImplementedError

    # ---- the working copy ------------------------------------------------------------------------
    def _working_study(self) -> Any:
        """The in-memory study, (re)built from the record when missing."""
        import optuna

        if self.study is None:
            with storage_errors():
                trials = self.storage.get_all_trials(self._record_study_id, deepcopy=False)
            study = optuna.create_study(directions=list(self.config.directions), sampler=self.make_sampler())
            study.add_trials(trials)
            self._record_ids = {t.number: frozen_trial_id(t) for t in trials}
            self._recorded_attrs = {t.number: dict(t.system_attrs) for t in trials if not t.state.is_finished()}
            self.study = study
        return self.study

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Any]:
        """Run a change on the working copy and the record; if anything fails, rebuild the copy next time."""
        study = self._working_study()
        try:
            with storage_errors():
                yield study
        except BaseException:
            self.study = None
            raise

    def _trial_id(self, number: int) -> int:
        """The working copy's trial id of trial `number`."""
        study = self._working_study()
        return int(working_storage(study).get_trial_id_from_study_id_trial_number(study_id(study), number))

    def _frozen(self, number: int) -> Any:
        return working_storage(self._working_study()).get_trial(self._trial_id(number))

    # ---- the contract ----------------------------------------------------------------------------
    def ask_batch(self, count: int, sample: Callable[[Any], Sampled]) -> list[tuple[int, Sampled]]:
        proposed: list[tuple[int, Sampled]] = []
        with self._writing() as study:
            for _ in range(count):
                trial = study.ask()
                proposed.append((trial.number, sample(trial)))
            frozen = [self._frozen(number) for number, _ in proposed]
            stored = create_trials(self.storage, self._record_study_id, frozen)
            for trial, (recorded_number, record_id) in zip(frozen, stored):
                if recorded_number != trial.number:
                    raise StorageError(f"study {self.config.study_name!r}: trial {trial.number} was stored as "
                                       f"{recorded_number}; another process writes this study (one controller "
                                       "per job: check the job's lease)")
                self._record_ids[trial.number] = record_id
                self._recorded_attrs[trial.number] = dict(trial.system_attrs)
        return proposed

    def _tell_record(self, number: int) -> None:
        """Copy the working copy's outcome of `number` (state, values, new system attrs) to the record."""
        frozen = self._frozen(number)
        before = self._recorded_attrs.pop(number, {})
        changed = {key: value for key, value in frozen.system_attrs.items() if before.get(key, _MISSING) != value}
        finish_trial(self.storage, self._record_ids[number], state=frozen.state, values=frozen.values,
                     system_attrs=changed, replace=[key for key in changed if key in before])

    def _finished(self, number: int) -> bool:
        return bool(self._frozen(number).state.is_finished())

    def tell(self, number: int, values: Sequence[float], *, constraint: float) -> None:
        """Record the latency constraint (latency minus target; <= 0 is feasible), then the values."""
        import optuna

        with self._writing() as study:
            if self._finished(number):
                return  # told before a crash: telling again would change nothing
            optuna.trial.Trial(study, self._trial_id(number)).set_constraint("latency_ms", float(constraint))
            study.tell(number, list(values), skip_if_finished=True)
            self._tell_record(number)

    def _tell_state(self, number: int, state: Any) -> None:
        with self._writing() as study:
            if self._finished(number):
                return
            study.tell(number, state=state, skip_if_finished=True)
            self._tell_record(number)

    def tell_failed(self, number: int) -> None:
        import optuna

        self._tell_state(number, optuna.trial.TrialState.FAIL)

    def tell_stopped(self, number: int) -> None:
        import optuna

        self._tell_state(number, optuna.trial.TrialState.PRUNED)

    def open_numbers(self) -> list[int]:
        import optuna

        study = self._working_study()
        return [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]


@register_strategy("nsga2")
class NSGA2Strategy(OptunaStrategy):
    """NSGA-II with constrained domination (feasible candidates dominate infeasible ones).

    The constraint reaches the sampler through `Trial.set_constraint` (Optuna 5), set in `tell`.
    """

    def make_sampler(self) -> Any:
        import optuna

        population = max(4, min(50, self.config.trials_budget // 3))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=self.config.seed)


@register_strategy("tpe")
class TPEStrategy(OptunaStrategy):
    """Multi-objective TPE with the latency constraint."""

    def make_sampler(self) -> Any:
        import optuna

        # With several trials in flight, the constant liar keeps concurrent asks from proposing the same arch.
        return optuna.samplers.TPESampler(seed=self.config.seed, constant_liar=self.config.parallel > 1,
                                          n_startup_trials=max(2, min(10, self.config.trials_budget // 3)))


@register_strategy("random")
class RandomStrategy(OptunaStrategy):
    """Uniform random sampling: the baseline every other strategy must beat."""

    def make_sampler(self) -> Any:
        import optuna

        return optuna.samplers.RandomSampler(seed=self.config.seed)
