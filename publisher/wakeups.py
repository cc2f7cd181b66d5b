"""Wake-ups sent only after the transaction that made them necessary has committed.

A service that changes rows and wants a worker to act calls :func:`after_commit`; the message goes out once
the session commits (never for a rolled-back change), so a worker never looks for a row that is not there
yet. Messages are only wake-ups: the pollers in beat find the same work in the database if one is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
_KEY = "matrix_after_commit"


def after_commit(session: Session, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``fn(*args, **kwargs)`` after ``session`` commits; dropped on rollback."""
    session.info.setdefault(_KEY, []).append((fn, args, kwargs))


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    for fn, args, kwargs in session.info.pop(_KEY, []):
        try:
            fn(*args, **kwargs)
        except Exception:  # a lost wake-up is recovered by the pollers; never fail the committed work
            log.exception("wake-up %s%r failed; the poller will pick the work up", getattr(fn, "__name__", fn), args)


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_KEY, None)


def enqueue(task_name: str, *args: Any, countdown: float | None = None) -> None:
    """Send a Celery task by name (imported lazily so the API/CLI need no worker code loaded)."""
    from workers.app import sender_app

    options: dict[str, Any] = {}
    if countdown:
        options["countdown"] = countdown
    sender_app().send_task(task_name, args=list(args), **options)
