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
    for table, column in JOB_TABLES:
        op.execute(f"""
            CREATE FUNCTION {table}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    PERFORM pg_notify('hwnas_changes', 'job:' || OLD.{column});
                ELSE
                    PERFORM pg_notify('hwnas_changes', 'job:' || NEW.{column});
                END IF;
                RETURN NULL;
            END $$""")
        op.execute(f"CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {table}_notify()")
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
    for table, _ in (*JOB_TABLES, ("nas_api_tokens", None)):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_notify()")
