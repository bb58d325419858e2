"""The strategy contract: propose candidates (ask) and learn from results (tell), resumably."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from search_spaces.registry import Registry

Direction = Literal["minimize", "maximize"]
Sampled = TypeVar("Sampled")  # what a space samples for one trial (an Arch)


@dataclass(frozen=True)
class StrategyConfig:
    """What every strategy is built from; its state lives in the database under `study_name`."""

    study_name: str
    storage_url: str
    directions: tuple[Direction, ...]
    seed: int
    trials_budget: int
    parallel: int = 1  # trials that may be asked before earlier ones are told
    metric_names: tuple[str, ...] = ()  # one per direction, stored with the study (dashboards label axes by them)


class Strategy(ABC):
    """Proposes trials in batches; `ask_batch` hands each new trial to `sample` (an object a space samples
    an architecture from) and stores what was sampled before it returns.

    State is kept in the database, so a new strategy object for the same study resumes the search.
    `tell` takes objective values and the constraint violation (<= 0 feasible), or marks a failure.
    """

    name: ClassVar[str]

    def __init__(self, config: StrategyConfig) -> None:
        self.config = config

    @abstractmethod
    def ask_batch(self, count: int, sample: Callable[[Any], Sampled]) -> list[tuple[int, Sampled]]:
        """`count` new trials at once, to fill free workers: `(trial number, sample(trial))` each, stored.

        An NSGA-II generation is sampled from one parent population, so asking several before any is
        told changes nothing it would have proposed.
        """

    @abstractmethod
    def tell(self, number: int, values: Sequence[float], *, constraint: float) -> None: ...

    @abstractmethod
    def tell_failed(self, number: int) -> None: ...

    @abstractmethod
    def tell_stopped(self, number: int) -> None:
        """The trial was stopped early (a lower budget than the others: its values are not comparable)."""

    @abstractmethod
    def open_numbers(self) -> list[int]:
        """Trials asked but never told (left by a process that died)."""


STRATEGIES: Registry[Strategy] = Registry("strategy", Strategy)


def register_strategy(name: str):  # type: ignore[no-untyped-def]
    return STRATEGIES.register(name)


def strategy_names() -> list[str]:
    import nas.engine.strategies.evolution  # noqa: F401  (registers the built-in strategies)
    import nas.engine.strategies.optuna_strategies  # noqa: F401

    return STRATEGIES.names()


def make_strategy(name: str, config: StrategyConfig) -> Strategy:
    strategy_names()
    return STRATEGIES.get(name)(config)
