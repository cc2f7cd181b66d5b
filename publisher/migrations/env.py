"""Alembic environment: the URL comes from settings (or the caller's config), metadata from the models."""

from alembic import context

import core.audit
import core.notify
import core.ratelimit
import monitor.models
import publisher.domain.models
from core.db import Base, engine_for

# Every table of the one schema lives on core.db.Base; importing the modules that define them registers them.
_MODELS = (core.audit, core.notify, core.ratelimit, publisher.domain.models, monitor.models)

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = engine_for(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        # batch mode lets later migrations ALTER tables on SQLite too
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
