"""`InProcessExecutor`: evaluates candidates one at a time in the calling process (tests, debugging)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from workers.evaluate import evaluate_candidate
from workers.executors.base import Executor, register_executor
from workers.types import CandidateTask, EvalResult


@register_executor("in-process")
class InProcessExecutor(Executor):
    def __init__(self, *, evaluate: Callable[[CandidateTask], EvalResult] = evaluate_candidate) -> None:
        self._evaluate = evaluate
        self._queue: deque[CandidateTask] = deque()

    @property
    def slots(self) -> int:
        return 1

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, candidate: CandidateTask) -> None:
        self._queue.append(candidate)

    def trial_numbers(self) -> set[int]:
        return {c.trial_number for c in self._queue}

    def wait(self, *, timeout_s: float | None = None) -> list[EvalResult]:
        if not self._queue:
            return []
        return [self._evaluate(self._queue.popleft())]

    def cancel_all(self) -> list[int]:
        numbers = [c.trial_number for c in self._queue]
        self._queue.clear()
        return numbers
