"""Executors: where candidates run (in-process, Ray)."""

from __future__ import annotations

from workers.executors.base import (
    EXECUTORS,
    Executor,
    ExecutorOptions,
    get_executor_class,
    make_executor,
    register_executor,
)

__all__ = ["EXECUTORS", "Executor", "ExecutorOptions", "get_executor_class", "make_executor", "register_executor"]
