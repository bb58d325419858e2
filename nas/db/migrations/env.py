"""Alembic environment for hwnas's own tables. Optuna's tables are left to Optuna."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from nas.db.models import Base

VERSION_TABLE = "nas_alembic_version"  # Optuna keeps its own `alembic_version` in the same database


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    return type_ != "table" or str(name).startswith("nas_")


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                      include_object=include_object, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
