"""Executors: where candidates run (in-process, Ray)."""

from __future__ import annotations

from workers.executors.base import EXECUTORS, Executor, get_executor_class, register_executor

__all__ = ["EXECUTORS", "Executor", "get_executor_class", "register_executor"]
