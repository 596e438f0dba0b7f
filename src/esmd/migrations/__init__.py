"""Alembic migrations of the policy database, run programmatically by ``esmd init``."""
