"""Metadata storage: engines and sessions, tables, repositories and Alembic migrations."""
