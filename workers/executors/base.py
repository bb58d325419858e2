"""The executor contract: run `evaluate_candidate` somewhere and hand results back to the controller."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from search_spaces.registry import Registry
from workers.types import CandidateTask, EvalResult


@dataclass(frozen=True)
class ExecutorOptions:
    """What the service knows that an executor may use: a cluster address, a fixed number of slots (None:
    the executor decides) and the CPUs each candidate asks for."""

    address: str | None = None
    slots: int | None = None
    cpus_per_trial: float = 1.0


class Executor(ABC):
    """Runs candidates, at most `slots` at a time, and returns their results as they finish.

    Workers never touch the database: the controller that owns the executor writes every result.
    A candidate whose worker dies comes back as a failed `EvalResult` with `lost=True`, never as an
    exception; the controller decides whether it runs again. `slots` may change while the executor
    runs (nodes join or die).
    """

    name: ClassVar[str]

    @classmethod
    def from_options(cls, options: ExecutorOptions) -> Executor:
        """The executor the service runs jobs on (an executor that needs none of the options ignores them)."""
        return cls()

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many candidates may run at once."""

    @property
    @abstractmethod
    def in_flight(self) -> int: ...

    @abstractmethod
    def submit(self, candidate: CandidateTask) -> None: ...

    @abstractmethod
    def trial_numbers(self) -> set[int]:
        """Trial numbers of the candidates in flight."""

    @abstractmethod
    def wait(self, *, timeout_s: float | None = None) -> list[EvalResult]:
        """Block until at least one candidate finishes (or `timeout_s` passes); return those finished."""

    @abstractmethod
    def cancel_all(self) -> list[int]:
        """Stop candidates in flight (a cancelled job); return their trial numbers."""

    def shutdown(self) -> None:  # noqa: B027  (a lifecycle hook: an executor that holds nothing keeps it)
        """Release resources; the executor is not used afterwards."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


EXECUTORS: Registry[Executor] = Registry("executor", Executor)


def register_executor(name: str):  # type: ignore[no-untyped-def]
    return EXECUTORS.register(name)


def get_executor_class(name: str) -> type[Executor]:
    import workers.executors.in_process  # noqa: F401
    import workers.executors.ray_executor  # noqa: F401

    return EXECUTORS.get(name)


def make_executor(name: str, options: ExecutorOptions) -> Executor:
    """The executor registered as `name`, built from the service's options."""
    return get_executor_class(name).from_options(options)
