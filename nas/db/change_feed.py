"""What may have changed in the database since an answer was read: the version counters behind the API's
in-memory answers and token checks.

On PostgreSQL, triggers (migration 0008) send a notification on channel `hwnas_changes` at the commit of any
change to a job or what its answers show (its trials, front, hypervolume history, checkpoints), or to a
token's validity. One thread per process LISTENs and bumps a counter per key: `job:<id>`, `jobs` (any job)
and `tokens`. A commit that writes, made by this process through the storage's engine, bumps every key at
once, so a request always reads its own process's writes.

On SQLite (a database file), every key's version is the file's `PRAGMA data_version` on a connection of
the feed's own, which moves at every commit by any other connection, of any process: coarser (any change
moves every key) but exact, and a few microseconds without a thread.

A cached answer is kept with the `version(key)` read *before* the database was: if anything changes after
that read began, the version moves and the answer is read again. While the listening connection is down
(and for an in-memory SQLite) `version` is None: callers read the database every time. On PostgreSQL,
notifications reach other processes within milliseconds of the commit; that is the window in which another
API process may still serve an answer (or accept a token) from before the change.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import Engine, event

logger = logging.getLogger(__name__)

CHANNEL = "hwnas_changes"
_WRITES = ("INSERT", "UPDATE", "DELETE")
Version = tuple[int, int, int]


class ChangeFeed:
    """Version counters for `job:<id>`, `jobs` and `tokens`, kept true by LISTEN/NOTIFY and local commits."""

    def __init__(self, engine: Engine, *, reconnect_s: float = 1.0, poll_s: float = 0.5) -> None:
        self._engine = engine
        self.reconnect_s = reconnect_s
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._epoch = 0  # moves at every (re)connection: what was missed while down is never trusted
        self._local = 0  # moves at every commit of this process that wrote
        self._live = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.notifications = 0  # received, for tests and the load benchmark
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._sqlite_file = database if database and database != ":memory:" else None
        self._sqlite: sqlite3.Connection | None = None
        self.supported = engine.dialect.name == "postgresql" or self._sqlite_file is not None

    # ---- reading ------------------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        return self._live

    def version(self, key: str) -> Version | None:
        """The key's version now, or None when changes cannot be seen (read the database instead)."""
        if not self._live:
            return None
        if self._sqlite is not None:
            with self._lock:
                try:
                    return self._epoch, self._sqlite.execute("PRAGMA data_version").fetchone()[0], 0
                except sqlite3.Error:
                    return None
        return self._epoch, self._local, self._counters.get(key, 0)

    # ---- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Listen in a daemon thread (PostgreSQL), and count this process's own writes. Idempotent."""
        if not self.supported or self._thread is not None or self._sqlite is not None:
            return
        if self._sqlite_file is not None:
            self._sqlite = sqlite3.connect(self._sqlite_file, check_same_thread=False, isolation_level=None)
            self._live = True
            return
        event.listen(self._engine, "after_cursor_execute", self._after_execute)
        event.listen(self._engine, "commit", self._after_commit)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._listen, name="hwnas-change-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._sqlite is not None:
            self._live = False
            with self._lock:
                self._sqlite.close()
                self._sqlite = None
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout=5 * self.poll_s + 5)
        self._thread = None
        self._live = False
        event.remove(self._engine, "after_cursor_execute", self._after_execute)
        event.remove(self._engine, "commit", self._after_commit)

    def wait_live(self, timeout_s: float) -> bool:
        """Block until the feed listens (tests, start-up); False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not self._live and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._live

    # ---- this process's writes -----------------------------------------------------------------------
    def _after_execute(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip()[:6].upper() in _WRITES:
            # Bumped now (an autocommit statement is already committed) and again at the commit, so that an
            # answer read between the two, which could not see the write yet, is not kept under the new version.
            conn.info["hwnas_wrote"] = True
            self._bump_local()

    def _after_commit(self, conn: Any) -> None:
        if conn.info.pop("hwnas_wrote", False):
            self._bump_local()

    def _bump_local(self) -> None:
        with self._lock:
            self._local += 1

    # ---- other processes' writes ---------------------------------------------------------------------
    def _received(self, payload: str) -> None:
        with self._lock:
            self.notifications += 1
            self._counters[payload] = self._counters.get(payload, 0) + 1
            if payload.startswith("job:"):
                self._counters["jobs"] = self._counters.get("jobs", 0) + 1

    def _listen(self) -> None:
        while not self._stopping.is_set():
            connection = None
            try:
                fairy = self._engine.raw_connection()  # the engine's own connect arguments, outside its pool
                connection = fairy.driver_connection
                fairy.detach()
                connection.autocommit = True
                connection.execute(f"LISTEN {CHANNEL}")
                with self._lock:
                    self._epoch += 1
                    self._live = True
                logger.debug("change feed: listening on %s", CHANNEL)
                while not self._stopping.is_set():
                    for note in connection.notifies(timeout=self.poll_s):
                        self._received(note.payload)
            except Exception as exc:  # noqa: BLE001 - a lost connection: read the database until back
                logger.warning("change feed: %s; answers are read from the database until it reconnects",
                               str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            finally:
                with self._lock:
                    self._live = False
                    self._epoch += 1
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:  # noqa: BLE001, S110 - closing a broken connection
                        pass
            self._stopping.wait(self.reconnect_s)
