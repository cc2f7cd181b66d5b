"""Database migrations (Alembic), callable from the CLI and from `matrix up`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.settings import get_settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at our migrations and the configured (or given) database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url or get_settings().database_url)
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(url), revision)


def current(url: str | None = None) -> str | None:
    """The database's current revision, or None for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    from core.db import engine_for

    with engine_for(url or get_settings().database_url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
