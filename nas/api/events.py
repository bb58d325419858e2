"""Live job progress for server-sent events: one poller per job per process, fanned out to every watcher.

Each watched job has one task that reads its summary from the database every `interval_s` and wakes the
watchers when it changed; a hundred watchers of a job cost what one costs. The change feed
(`nas.db.change_feed`) tells it whether the job may have changed at all, so an idle job costs no reads. The poller stops when the job ends or its last watcher leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from fastapi.concurrency import run_in_threadpool

from nas.db.storage import FINISHED_JOB_STATES


def summary_key(summary: dict[str, Any]) -> tuple[Any, ...]:
    """What a watcher is told about: a change in any of these."""
    return (summary["state"], summary["trials"], summary["hypervolume"], summary["message"],
            (summary["checkpoint"] or {}).get("id"))


@dataclass
class _Watch:
    latest: dict[str, Any]
    version: int = 0
    watchers: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task[None] | None = None


class JobEvents:
    """Shares one database poller per job among all its watchers (in this process's event loop)."""

    def __init__(self, read_summary: Callable[[int], dict[str, Any]], *, interval_s: float,
                 version: Callable[[int], Hashable | None] = lambda job_id: None) -> None:
        self._read = read_summary
        self._version = version
        self.interval_s = interval_s
        self._watches: dict[int, _Watch] = {}
        self.polls = 0  # database reads made, for tests and the load benchmark

    async def _poll(self, job_id: int, watch: _Watch) -> None:
        key, read_at = summary_key(watch.latest), None
        while watch.latest["state"] not in FINISHED_JOB_STATES:
            await asyncio.sleep(self.interval_s)
            version = self._version(job_id)  # read before the database: a change after it moves it
            if version is not None and version == read_at:
                continue  # the change feed vouches that nothing changed: no read
            try:
                summary = await run_in_threadpool(self._read, job_id)
            except Exception:  # noqa: BLE001 - a database outage: keep the last summary and try again
                continue
            read_at = version
            self.polls += 1
            if summary_key(summary) != key:
                key = summary_key(summary)
                async with watch.changed:
                    watch.latest = summary
                    watch.version += 1
                    watch.changed.notify_all()

    async def watch(self, job_id: int, *, first: dict[str, Any],
                    quiet_s: float) -> AsyncIterator[dict[str, Any] | None]:
        """The job's summaries as they change (the current one first); None after `quiet_s` without change
        (time for a keep-alive). Ends only when the caller stops iterating."""
        watch = self._watches.get(job_id)
        if watch is None:
            watch = self._watches[job_id] = _Watch(latest=first)
        watch.watchers += 1
        if watch.task is None or watch.task.done():
            watch.task = asyncio.create_task(self._poll(job_id, watch))
        try:
            seen = watch.version
            yield watch.latest
            while True:
                async with watch.changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(watch.changed.wait_for(lambda: watch.version != seen), quiet_s)
                if watch.version == seen:
                    if watch.task.done() and watch.latest["state"] in FINISHED_JOB_STATES:
                        yield watch.latest
                    else:
                        yield None
                    continue
                seen = watch.version
                yield watch.latest
        finally:
            watch.watchers -= 1
            if watch.watchers == 0:
                if watch.task is not None:
                    watch.task.cancel()
                self._watches.pop(job_id, None)
