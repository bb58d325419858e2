"""The command line's guards: SQLite is the embedded default for one process; a second process running
controllers on it is refused.

Controllers write every trial, the Optuna study and the lease heartbeat; two processes doing so on one
SQLite file contend for its single write lock (and, on a network filesystem, can corrupt it). Each process
that runs controllers on a SQLite file holds an exclusive `flock` on `<file>.controllers.lock`; a second
such process is told, at once, to use PostgreSQL or the running server. PostgreSQL needs no such lock:
leases in the jobs table keep any number of controllers apart.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import IO

from nas.db.engine import sqlite_path
from search_spaces.errors import ConflictError

_held: dict[Path, IO[str]] = {}
_guard = threading.Lock()


def hold_controller_lock(url: str, *, role: str) -> None:
    """Mark this process as the one running controllers on the SQLite file of `url` (no-op for PostgreSQL).

    Held until the process exits (a killed process releases it too); taking it again in the same process
    is allowed. Raises `ConflictError` naming the other process when one holds it.
    """
    path = sqlite_path(url)
    if path is None:
        return
    lock_path = path.with_name(path.name + ".controllers.lock")
    with _guard:
        if lock_path in _held:
            return
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConflictError(
                f"the SQLite database {str(path)!r} already has a controller process ({holder}); SQLite is for one "
                "process, so a second one cannot run jobs on it: submit to that server with `hwnas submit` "
                "(HWNAS_URL), wait for it to finish, or use PostgreSQL (HWNAS_DATABASE_URL=postgresql://...) "
                "to run several controllers") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, {role}")
        handle.flush()
        _held[lock_path] = handle


def refuse_sqlite(url: str, *, command: str) -> None:
    """Commands whose point is several processes (`hwnas controller`) refuse SQLite outright."""
    path = sqlite_path(url)
    if url.startswith("sqlite"):
        where = str(path) if path else "an in-memory database"
        raise ConflictError(
            f"`{command}` runs beside other controllers and the API, which SQLite ({where}) cannot serve "
            "safely from several processes; set HWNAS_DATABASE_URL to a PostgreSQL database "
            "(postgresql://user@host:5432/db), or use `hwnas serve` alone for the embedded SQLite set-up")
