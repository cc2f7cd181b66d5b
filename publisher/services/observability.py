"""The figures Prometheus reads from the source of truth at scrape time (see :mod:`core.metrics`)."""

from __future__ import annotations

from sqlalchemy import func, select

from core.db import READ_ONLY, get_engine
from publisher.domain.models import Account, Delivery, Post

Family = tuple[str, str, list[str], list[tuple[list[str], float]]]


def database_gauges() -> list[Family]:
    """Deliveries by channel and state, and posts by state, counted in the database (two grouped queries)."""
    # a read that takes no write lock (a plain BEGIN on SQLite): a scrape never waits for a busy writer
    with get_engine().connect() as s:
        s.execution_options(**READ_ONLY)
        deliveries = s.execute(
            select(Account.kind, Delivery.state, func.count())
            .join(Account, Account.id == Delivery.account_id)
            .group_by(Account.kind, Delivery.state)
        ).all()
        posts = s.execute(select(Post.state, func.count()).group_by(Post.state)).all()
    return [
        ("matrix_deliveries", "Deliveries by channel and state (the database).", ["channel", "state"],
         [([kind, state], float(n)) for kind, state, n in deliveries]),
        ("matrix_posts", "Posts by state (the database).", ["state"], [([state], float(n)) for state, n in posts]),
    ]  # fmt: skip
