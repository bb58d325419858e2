"""Rendered answers (a job, its front, its trial pages, the job list) and checked tokens, kept per API process.

An answer is rendered (validated against its response model and encoded) once, and served as bytes while
what it shows is unchanged:
- while its version in the change feed (`nas.db.change_feed`: PostgreSQL's LISTEN/NOTIFY, SQLite's
  data_version) stays the same. A hit then touches no database and no thread: it is answered on the event
  loop, the token checked from memory too.
- without a live feed (an in-memory SQLite, or PostgreSQL's feed connection down), only a finished job's
  answers are kept, while
  the job's state and newest checkpoint (one indexed query per request) stay the same: a finished job no
  longer changes, except that a checkpoint can be exported on request.

Memory is bounded (least recently used answers go first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from fastapi import Response
from pydantic import BaseModel

from nas.auth import age_s, last_use_due
from nas.db.change_feed import ChangeFeed
from nas.db.records import TokenRecord
from nas.db.storage import FINISHED_JOB_STATES, Storage


def _version_key(job_id: int | None) -> str:
    return f"job:{job_id}" if job_id is not None else "jobs"


class Answers:
    """An LRU of `(key) -> (version, JSON bytes)`, at most `max_bytes` in all."""

    def __init__(self, feed: ChangeFeed | None = None, *, max_bytes: int = 64 << 20) -> None:
        self.feed = feed
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Hashable, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0

    def _feed_version(self, job_id: int | None) -> Hashable | None:
        version = self.feed.version(_version_key(job_id)) if self.feed is not None else None
        return ("feed", version) if version is not None else None

    def _get(self, key: Hashable, version: Hashable) -> Response | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] != version:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return Response(found[1], media_type="application/json")

    def _put(self, key: Hashable, version: Hashable, body: bytes) -> None:
        if len(body) > self.max_bytes // 8:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            self._size += len(body) - (len(old[1]) if old else 0)
            self._entries[key] = (version, body)
            while self._size > self.max_bytes and self._entries:
                self._size -= len(self._entries.popitem(last=False)[1][1])

    def cached(self, key: Hashable, *, job_id: int | None) -> Response | None:
        """The answer for `key` from memory, when the feed vouches it is current (no database, no thread)."""
        version = self._feed_version(job_id)
        return self._get(key, version) if version is not None else None

    def answer(self, storage: Storage, key: Hashable, model: type[BaseModel], render: Callable[[], Any], *,
               job_id: int | None) -> Response:
        """The answer for `key` (about job `job_id`, or about every job when None): cached, or `render()`
        validated by `model` and kept. Call inside `storage.unit_of_work()`: the version and the render
        share a session."""
        version = self._feed_version(job_id)  # read before the database: a change after it moves it
        if version is None and job_id is not None:
            state, checkpoint_id = storage.job_version(job_id)
            version = (state, checkpoint_id) if state in FINISHED_JOB_STATES else None
        if version is not None and (hit := self._get(key, version)) is not None:
            return hit
        body = model.model_validate(render()).model_dump_json().encode()
        if version is not None:
            self._put(key, version, body)
        return Response(body, media_type="application/json")


class TokenChecks:
    """Live tokens by hash, trusted while the feed's `tokens` version stays the same (else None: read the
    database). Expiry is checked at every use; a token due for its last-use record is not served from here."""

    def __init__(self, feed: ChangeFeed | None = None, *, max_tokens: int = 10_000) -> None:
        self.feed = feed
        self.max_tokens = max_tokens
        self._entries: dict[str, tuple[Hashable, TokenRecord]] = {}

    def version(self) -> Hashable | None:
        return self.feed.version("tokens") if self.feed is not None else None

    def get(self, token_hash: str, *, touch_interval_s: float) -> TokenRecord | None:
        version = self.version()
        found = self._entries.get(token_hash) if version is not None else None
        if found is None or found[0] != version:
            return None
        token = found[1]
        if token.expires_at is not None and age_s(token.expires_at) >= 0:
            return None
        if last_use_due(token.last_used_at, interval_s=touch_interval_s):
            return None
        return token

    def put(self, version: Hashable | None, token: TokenRecord) -> None:
        if version is None:
            return
        if len(self._entries) >= self.max_tokens:
            self._entries.clear()
        self._entries[token.token_hash] = (version, token)
