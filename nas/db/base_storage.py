"""Sessions over one engine, shared by every store: a unit of work per call (or per request), errors mapped
to the hwnas hierarchy (a database that is away is `DatabaseUnavailableError`)."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from search_spaces.errors import DatabaseUnavailableError, HwnasError, StorageError

JOB_STATES = ("queued", "running", "completed", "failed", "cancelled")
FINISHED_JOB_STATES = ("completed", "failed", "cancelled")
TRIAL_STATES = ("pending", "running", "complete", "infeasible", "failed", "stopped")
FINISHED_TRIAL_STATES = ("complete", "infeasible", "failed", "stopped")


def is_disconnect(exc: BaseException) -> bool:
    """Whether a database error means "not reachable now" (server restarting, connection dropped, locked)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


class StorageBase:
    """One engine and its sessions. Sessions commit or roll back as a unit."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._autocommit_sessions = sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"),
                                                 expire_on_commit=False)
        self._bound: contextvars.ContextVar[Session | None] = contextvars.ContextVar(f"hwnas-session-{id(self)}",
                                                                                    default=None)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    @contextlib.contextmanager
    def unit_of_work(self, *, autocommit: bool = False) -> Iterator[None]:
        """Run every storage call inside on one session (one pooled connection, one transaction), committed
        at the end: a request that makes several reads checks out one connection, not one per read.

        With `autocommit` each statement is its own transaction: no BEGIN and COMMIT round trips, for hot
        reads that need no snapshot shared by their statements."""
        if self._bound.get() is not None:
            yield
            return
        with self.session(autocommit=autocommit) as session:
            token = self._bound.set(session)
            try:
                yield
            finally:
                self._bound.reset(token)

    @contextlib.contextmanager
    def session(self, *, autocommit: bool = False) -> Iterator[Session]:
        bound = self._bound.get()
        if bound is not None:  # inside unit_of_work: its session, committed (or rolled back) by it
            yield bound
            return
        session = (self._autocommit_sessions if autocommit else self._sessions)()
        try:
            yield session
            session.commit()
        except HwnasError:
            session.rollback()
            raise
        except SQLAlchemyError as exc:
            with contextlib.suppress(SQLAlchemyError):
                session.rollback()
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if is_disconnect(exc):
                raise DatabaseUnavailableError(f"database unavailable: {first_line}") from exc
            raise StorageError(f"database error: {first_line}") from exc
        finally:
            with contextlib.suppress(SQLAlchemyError):
                session.close()

    def wait_until_available(self, *, timeout_s: float, poll_s: float = 1.0) -> None:
        """Block until the database answers again; raise `DatabaseUnavailableError` after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self.session() as s:
                    s.execute(text("SELECT 1"))
                return
            except DatabaseUnavailableError:
                if time.monotonic() >= deadline:
                    raise DatabaseUnavailableError(
                        f"the database at {self.engine.url!r} has not answered for {timeout_s:.0f} s; "
                        "check that it runs, or raise HWNAS_DB_OUTAGE_TIMEOUT_S") from None
                time.sleep(poll_s)
