from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from nas.db.engine import current_revision, make_engine, upgrade_database
from nas.db.models import Base


def head_revision(url: str) -> str:
    """The newest migration script's revision (what a fresh database must end at)."""
    from alembic.script import ScriptDirectory

    from nas.db.engine import alembic_config

    return str(ScriptDirectory.from_config(alembic_config(url)).get_current_head())


def _check_migrated(url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(url)
    assert current_revision(engine) is None
    upgrade_database(engine)
    upgrade_database(engine)  # idempotent
    tables = set(inspect(engine).get_table_names())
    ours = {t for t in tables if t.startswith("nas_")}
    assert ours == set(Base.metadata.tables) | {"nas_alembic_version"}
    assert current_revision(engine) == head_revision(url) == "0010"
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "version_table": "nas_alembic_version",
            "include_object": lambda o, n, t, r, c: t != "table" or n.startswith("nas_")})
        assert compare_metadata(context, Base.metadata) == []  # the migration builds exactly the models
    engine.dispose()


def test_migrations_from_empty_sqlite(sqlite_url: str) -> None:
    _check_migrated(sqlite_url)
    with make_engine(sqlite_url).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.postgres
def test_migrations_from_empty_postgres(postgres_url: str) -> None:
    _check_migrated(postgres_url)


def _migrate(url: str) -> None:
    from nas.db.storage import open_storage

    open_storage(url).engine.dispose()  # migrates and seeds the built-in device profiles


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_concurrent_first_migrations_do_not_race(backend: str, request: pytest.FixtureRequest) -> None:
    """Several processes opening a new database at once all succeed (one migrates, the others wait)."""
    from concurrent.futures import ProcessPoolExecutor

    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    with ProcessPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(_migrate, url) for _ in range(4)]:
            future.result(timeout=120)
    assert current_revision(make_engine(url)) == head_revision(url)
    from nas.db.storage import open_storage

    assert open_storage(url).device("cpu-2t").threads == 2


def test_sqlite_path_names_a_file_only_for_a_file_database(tmp_path: Path) -> None:
    from nas.db.engine import sqlite_path

    assert sqlite_path("sqlite://") is None and sqlite_path("sqlite:///:memory:") is None  # in memory
    assert sqlite_path(f"sqlite:///{tmp_path / 'x.db'}") == (tmp_path / "x.db").resolve()
    assert sqlite_path("postgresql+psycopg://postgres@127.0.0.1/test") is None


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_job_stored_before_search_modes_stays_standalone(backend: str, request: pytest.FixtureRequest) -> None:
    """A spec that leaves `search.mode` out now means one-shot on a space with a supernet; a job stored before
    the field existed ran standalone, and after the upgrade it still reads as standalone."""
    import sqlalchemy as sa

    from nas.db.storage import open_storage

    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    engine = make_engine(url)
    upgrade_database(engine, "0008")
    old_spec = {"space": "sparse-transformer", "space_options": {}, "device": "cpu-1t", "latency_target_ms": 1.0,
                "task": {"kind": "language-modeling", "train": "builtin:python-stdlib"},
                "budget": {"trials": 4, "train_steps": 10}, "seed": 0}
    with engine.begin() as connection:
        from datetime import datetime, timezone

        columns = {"spec": sa.JSON, "space": sa.String, "device": sa.String, "state": sa.String,
                   "latency_target_ms": sa.Float, "strategy": sa.String, "trials_budget": sa.Integer,
                   "study_name": sa.String, "created_at": sa.DateTime, "cancel_requested": sa.Boolean}
        jobs = sa.table("nas_jobs", *(sa.column(name, kind) for name, kind in columns.items()))
        connection.execute(jobs.insert().values(
            spec=old_spec, space="sparse-transformer", device="cpu-1t", state="queued", latency_target_ms=1.0,
            strategy="nsga2", trials_budget=4, study_name="old", cancel_requested=False,
            created_at=datetime(2026, 12, 1, tzinfo=timezone.utc)))
    engine.dispose()
    storage = open_storage(url)  # migrates to the head
    [job] = storage.list_jobs()
    assert job.job_spec.search.mode == "standalone" and job.job_spec.strategy == "nsga2"
    from nas.spec import parse_spec

    fresh = parse_spec(old_spec)  # the new defaults, for a spec submitted today
    assert fresh.search.mode == "one-shot" and fresh.strategy == "evolution"
