"""Strategies backed by Optuna samplers, with the study in the service's own database (ask/tell)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from nas.strategies.base import Strategy, StrategyConfig, register_strategy
from search_spaces.errors import DatabaseUnavailableError, StorageError

logger = logging.getLogger(__name__)


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
    """Wraps an Optuna study in RDB storage; subclasses choose the sampler."""

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

                sqlite_pragmas(self.storage.engine)  # each suggested parameter is a commit: no fsync for each
                self.storage.engine.dispose()
            self.study = optuna.create_study(study_name=config.study_name, storage=self.storage,
                                             directions=list(config.directions), sampler=self.make_sampler(),
                                             load_if_exists=True)

    def make_sampler(self) -> Any:
        raise NotImplementedError

    def ask(self) -> tuple[int, Any]:
        with storage_errors():
            trial = self.study.ask()
        return trial.number, trial

    def trial_for(self, number: int) -> Any:
        """The Optuna `Trial` of an open trial number."""
        import optuna

        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        return optuna.trial.Trial(self.study, trial_id)

    def tell(self, number: int, values: Sequence[float], *, constraint: float) -> None:
        """Record the latency constraint (latency minus target; <= 0 is feasible), then the values."""
        with storage_errors():
            trial = self.trial_for(number)
            if self.storage.get_trial(trial._trial_id).state.is_finished():
                return  # told before a crash: telling again would duplicate nothing, but skip the warning
            trial.set_constraint("latency_ms", float(constraint))
            self.study.tell(number, list(values), skip_if_finished=True)

    def tell_failed(self, number: int) -> None:
        import optuna

        with storage_errors():
            self.study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)

    def tell_stopped(self, number: int) -> None:
        import optuna

        with storage_errors():
            self.study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)

    def open_numbers(self) -> list[int]:
        import optuna

        with storage_errors():
            trials = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return [t.number for t in trials]


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
