"""Engines and migrations. Nothing is created at import time: callers pass a URL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def sqlite_pragmas(engine: Engine) -> None:
    """WAL, NORMAL sync, foreign keys and a busy timeout on every new connection of a SQLite engine."""

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL never corrupts the file; a power cut may lose the last commits, which the
        # controller's reconcile re-runs. FULL would fsync every commit (a trial is several).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for PostgreSQL or an in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite"):
        return None
    path = make_url(url).database  # None or "" for `sqlite://`, an in-memory database
    return Path(path).resolve() if path and path != ":memory:" else None


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for `url`; SQLite gets WAL mode, foreign keys and a busy timeout. A server database keeps
    `pool_size` connections open: a thread that finds the pool full would otherwise open (and close) a
    connection of its own, and on PostgreSQL that is a new server process per request."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=pool_size,
                               max_overflow=pool_size)
        sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


MIGRATION_LOCK_ID = 0x68776E6173  # "hwnas": the PostgreSQL advisory lock that serialises migrations


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Apply hwnas's migrations up to `revision` (idempotent).

    Processes that start at once (a search and a `hwnas cancel`, several controllers) would otherwise
    race to create the same tables: SQLite files are migrated under a file lock, PostgreSQL under an
    advisory lock held by the migrating transaction.
    """
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        lock: contextlib.AbstractContextManager[None] = _file_lock(Path(database + ".migrate.lock"))
    else:
        lock = contextlib.nullcontext()
    with lock, engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": "nas_alembic_version"}).get_current_revision()
