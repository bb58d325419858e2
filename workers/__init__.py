"""Workers: evaluate one candidate (train, validate); tasks and data; in-process and Ray executors."""

from __future__ import annotations

from workers.types import CandidateTask, EvalResult

__all__ = ["CandidateTask", "EvalResult"]
