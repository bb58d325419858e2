"""Rendered answers about finished jobs, kept per API process.

A finished job (completed, failed or cancelled) no longer changes, except that a checkpoint can be
exported on request. So its front, its summary and its trial pages are rendered (validated against their
response model and encoded) once, and served as bytes while the job's version, one indexed query for its
state and newest checkpoint, stays the same. Running and queued jobs are never cached. Memory is bounded
(least recently used answers go first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from fastapi import Response
from pydantic import BaseModel

from nas.db.storage import FINISHED_JOB_STATES, Storage


class FinishedJobAnswers:
    """An LRU of `(key) -> (job version, JSON bytes)`, at most `max_bytes` in all."""

    def __init__(self, *, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Hashable, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0

    def answer(self, storage: Storage, job_id: int, key: Hashable, model: type[BaseModel],
               render: Callable[[], Any]) -> Response:
        """The cached answer for `key` of job `job_id`, or `render()` validated by `model` (cached when the
        job is finished). Call inside `storage.unit_of_work()`: the version and the render share a session."""
        state, checkpoint_id = storage.job_version(job_id)
        version = (state, checkpoint_id) if state in FINISHED_JOB_STATES else None
        if version is not None:
            with self._lock:
                found = self._entries.get(key)
                if found is not None and found[0] == version:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return Response(found[1], media_type="application/json")
        body = model.model_validate(render()).model_dump_json().encode()
        if version is not None and len(body) <= self.max_bytes // 8:
            with self._lock:
                old = self._entries.pop(key, None)
                self._size += len(body) - (len(old[1]) if old else 0)
                self._entries[key] = (version, body)
                while self._size > self.max_bytes and self._entries:
                    self._size -= len(self._entries.popitem(last=False)[1][1])
        return Response(body, media_type="application/json")
