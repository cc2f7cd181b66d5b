"""The send side of the broker: task names in one place, the Celery configuration, and :func:`enqueue`.

Messages are only wake-ups: the database says what is due, and the pollers in beat find the same work again if
a message is lost. Producers (the API, the CLI, the services) send tasks *by name* through a small sending app
built here, so nothing outside ``workers/`` imports the worker app or its task code. ``workers.app`` builds the
consuming app from the same :func:`celery_config`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from celery import Celery

from core.settings import Settings, get_settings

# kombu's SQLite transport sleeps 1 s whenever a poll finds nothing, which left workers idle between deliveries
# (measured: 1.8 deliveries/s); 50 ms keeps them busy at a negligible cost.
SQLITE_POLL_S = 0.05


class Task(StrEnum):
    """Every task's name: the contract between the producers and ``workers.tasks``."""

    SCREEN_VERSION = "matrix.screen_version"
    DISPATCH_DUE = "matrix.dispatch_due"
    DELIVER = "matrix.deliver"
    DELIVER_MANY = "matrix.deliver_many"  # a slice of a fan-out: claimed, sent and recorded together
    RECONCILE = "matrix.reconcile"
    COLLECT_METRICS = "matrix.collect_metrics"
    RETRACT_DELIVERY = "matrix.retract_delivery"
    CHECK_DELIVERY = "matrix.check_delivery"
    CHECK_DELIVERIES = "matrix.check_deliveries"  # a batch's settling copies, looked at together
    RESCREEN_SCAN = "matrix.rescreen_scan"  # workers.rescreen_tasks: live posts whose rules changed
    RESCREEN_BATCH = "matrix.rescreen_batch"


def screening_queue(settings: Settings) -> str:
    """The queue of screening (CPU, the classifier loaded): apart from deliveries, which wait on the network."""
    return f"{settings.queue}-screening"


def status_queue(settings: Settings) -> str:
    """The queue of status checks (``check_delivery``): short looks at copies a platform is settling. A worker
    that takes deliveries takes this queue first: in the delivery queue a check waited behind the rest of a
    fan-out (1,000 messages), so WeChat and Toutiao copies settled a fan-out's length after the platform did."""
    return f"{settings.queue}-status"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for ``settings``: JSON only, late acks, time limits, the beat schedule."""
    transport_options: dict[str, Any] = {}
    if settings.broker_url.startswith("sqla+"):
        # kombu hands every transport option to create_engine, so the interval can only be set on the class.
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = SQLITE_POLL_S
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Longer than any task's hard time limit, so a slow task is never redelivered while it runs.
        # "priority": queues are read in the order a worker lists them (status checks first), not in turn.
        transport_options = {"visibility_timeout": 3600, "queue_order_strategy": "priority"}
    return {
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": settings.result_backend or None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,  # a killed worker's task goes back to the queue
        "worker_prefetch_multiplier": 1,
        "task_time_limit": 300,
        "task_soft_time_limit": 240,
        "task_default_queue": settings.queue,
        # screening on its own queue: a delivery worker (threads, no classifier) never takes it
        "task_routes": {
            **{
                task.value: {"queue": screening_queue(settings)}
                for task in (Task.SCREEN_VERSION, Task.RESCREEN_SCAN, Task.RESCREEN_BATCH)
            },
            Task.CHECK_DELIVERY.value: {"queue": status_queue(settings)},
            Task.CHECK_DELIVERIES.value: {"queue": status_queue(settings)},
        },
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            "dispatch-due": {"task": Task.DISPATCH_DUE.value, "schedule": settings.dispatch_interval_s},
            "reconcile": {"task": Task.RECONCILE.value, "schedule": settings.reconcile_interval_s},
            "collect-metrics": {"task": Task.COLLECT_METRICS.value, "schedule": settings.metrics_interval_s},
            "rescreen": {"task": Task.RESCREEN_SCAN.value, "schedule": settings.rescreen_interval_s},
        },
    }


_senders: dict[tuple[str, str], Celery] = {}


def sender_app() -> Celery:
    """An app that only *sends* tasks, by name, with the current settings (one per broker URL and queue)."""
    settings = get_settings()
    key = (settings.broker_url, settings.queue)
    if key not in _senders:
        app = Celery("matrix-sender", broker=settings.broker_url, set_as_current=False)
        app.conf.update(celery_config(settings))
        _senders[key] = app
    return _senders[key]


def enqueue(task: Task, *args: Any, countdown: float | None = None) -> None:
    """Send one task message (a wake-up). Call it through :func:`core.db.after_commit` inside a transaction."""
    options: dict[str, Any] = {}
    if countdown:
        options["countdown"] = countdown
    sender_app().send_task(str(task), args=list(args), **options)


def broker_reachable(timeout: float = 3.0) -> None:
    """Connect to the broker once; raises the transport's error if it cannot (for health checks)."""
    with sender_app().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)


def queue_depths(queues: list[str], timeout: float = 3.0) -> dict[str, int]:
    """Messages waiting in each queue, as the broker counts them (Redis list length, the SQLite transport's
    rows); a queue the broker does not know yet has 0. Raises the transport's error if the broker is down."""
    depths: dict[str, int] = {}
    with sender_app().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        channel = conn.default_channel
        for name in queues:
            try:
                depths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except conn.channel_errors:  # never declared: nothing was ever sent there
                depths[name] = 0
                channel = conn.channel()  # a failed passive declare may close the channel
    return depths
