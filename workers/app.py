"""The Celery application, built from settings: JSON only, late acks, time limits, beat schedule.

Run with ``matrix worker`` / ``matrix beat`` (or ``celery -A workers.app worker``).
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from publisher.config import Settings, get_settings

SQLITE_POLL_S = 0.05


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured for ``settings`` (default: the process settings)."""
    settings = settings or get_settings()
    app = Celery("matrix", broker=settings.broker_url, include=["workers.tasks"])
    transport_options: dict = {}
    if settings.broker_url.startswith("sqla+"):
        # The SQLite broker polls; kombu's default sleeps 1 s whenever a poll finds nothing, which left workers
        # idle between deliveries (measured: 1.8 deliveries/s). kombu hands every transport option to
        # create_engine, so the interval can only be set on the transport class.
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = SQLITE_POLL_S
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Longer than any task's hard time limit, so a slow task is never redelivered while it runs.
        transport_options = {"visibility_timeout": 3600}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=settings.result_backend or None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # a killed worker's task goes back to the queue
        worker_prefetch_multiplier=1,
        task_time_limit=300,
        task_soft_time_limit=240,
        task_default_queue=settings.queue,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "dispatch-due": {"task": "matrix.dispatch_due", "schedule": settings.dispatch_interval_s},
            "reconcile": {"task": "matrix.reconcile", "schedule": settings.reconcile_interval_s},
            "collect-metrics": {"task": "matrix.collect_metrics", "schedule": settings.metrics_interval_s},
        },
    )
    return app


celery_app = create_app()
QUEUE = get_settings().queue
_senders: dict[tuple[str, str], Celery] = {}


def sender_app() -> Celery:
    """An app for *sending* tasks with the current settings (the API and CLI only send, by task name)."""
    settings = get_settings()
    key = (settings.broker_url, settings.queue)
    if key not in _senders:
        _senders[key] = celery_app if key == (celery_app.conf.broker_url, QUEUE) else create_app(settings)
    return _senders[key]


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    # Pooled DB connections must not cross a fork into the worker's child processes.
    from publisher.db import get_engine

    get_engine().dispose(close=False)
    # Build the moderation engine (lexicons, and the classifier unless switched off) before the first task,
    # so no screening waits for it.
    import moderation

    moderation.get_screener().classifier  # noqa: B018 - loads as a side effect
