"""Tasks: data plus loss plus metric."""

from __future__ import annotations

from workers.tasks.base import TASKS, Task, TaskSpec, make_task, register_task, task_classes

__all__ = ["TASKS", "Task", "TaskSpec", "make_task", "register_task", "task_classes"]
