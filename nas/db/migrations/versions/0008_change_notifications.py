"""PostgreSQL: notify channel `hwnas_changes` at the commit of any change to what the API's answers show
(`nas.db.change_feed`); nothing on SQLite

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# (table, the expression naming the job a row belongs to)
JOB_TABLES = (("nas_jobs", "id"), ("nas_trials", "job_id"), ("nas_front_members", "job_id"),
              ("nas_hypervolume_history", "job_id"), ("nas_checkpoints", "job_id"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Statement-level triggers with transition tables: one notification per job a statement touched, not one
    # trigger call per row (replacing a front rewrites every member; a batch of proposals is one INSERT).
    for table, column in JOB_TABLES:
        for event, rows in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            name = f"{table}_notify_{event.lower()}"
            op.execute(f"""
                CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_notify('hwnas_changes', 'job:' || job) FROM (SELECT DISTINCT {column} AS job
                                                                           FROM changed_rows) AS touched;
                    RETURN NULL;
                END $$""")
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {rows} TABLE AS changed_rows "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()")
    # A token's validity: not its last use (recorded about once a minute), which no check depends on.
    op.execute("""
        CREATE FUNCTION nas_api_tokens_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'UPDATE' OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
               OR OLD.expires_at IS DISTINCT FROM NEW.expires_at OR OLD.scope IS DISTINCT FROM NEW.scope
               OR OLD.token_hash IS DISTINCT FROM NEW.token_hash THEN
                PERFORM pg_notify('hwnas_changes', 'tokens');
            END IF;
            RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER nas_api_tokens_notify AFTER INSERT OR UPDATE OR DELETE ON nas_api_tokens "
               "FOR EACH ROW EXECUTE FUNCTION nas_api_tokens_notify()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, _ in JOB_TABLES:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_notify_{event} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_notify_{event}()")
    op.execute("DROP TRIGGER IF EXISTS nas_api_tokens_notify ON nas_api_tokens")
    op.execute("DROP FUNCTION IF EXISTS nas_api_tokens_notify()")
