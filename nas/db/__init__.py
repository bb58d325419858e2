"""Database: SQLAlchemy models, Alembic migrations and the storage repository."""
