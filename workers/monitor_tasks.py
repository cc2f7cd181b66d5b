"""The monitor's Celery tasks, on the monitor's own queue (:mod:`monitor.queue` names and routes them).

Thin, as :mod:`workers.tasks`: beat's ``poll_due`` claims due sources and fans out one ``poll_source`` each;
``poll_source`` runs the pipeline (:func:`monitor.pipeline.poll_source`), which records every outcome on the
source itself, so nothing is retried by Celery: a failed fetch is rescheduled with backoff by the pipeline.
"""

from __future__ import annotations

from typing import Any

from celery import group
from celery.signals import celeryd_after_setup

from core.db import session_scope
from monitor import pipeline, services
from monitor.queue import MonitorTask
from monitor.settings import get_monitor_settings, monitor_queue
from workers.app import celery_app


@celery_app.task(name=MonitorTask.POLL_DUE.value)
def poll_due() -> int:
    """Beat: claim the sources that are due and poll each in a task of its own."""
    settings = get_monitor_settings()
    lease = settings.deadline_s + settings.timeout_s + 60  # longer than one poll can take
    with session_scope() as session:
        ids = services.claim_due(session, limit=settings.poll_batch, lease_s=lease)
    if ids:
        group(poll_source.si(i) for i in ids).apply_async(queue=monitor_queue(settings))
    return len(ids)


@celery_app.task(name=MonitorTask.POLL_SOURCE.value)
def poll_source(source_id: int) -> dict[str, Any]:
    """Poll one source: fetch, parse, store once, cluster, score, rules, alerts."""
    return pipeline.poll_source(source_id).to_dict()


@celeryd_after_setup.connect
def _consume_monitor_queue(instance: Any, **_kwargs: Any) -> None:
    # `matrix worker` names the publisher's queue with -Q; the shared worker of the embedded default takes the
    # monitor's too (Celery's documented way to add a queue at start-up). Off: a worker of its own does.
    if get_monitor_settings().shared_worker:
        instance.app.amqp.queues.select_add(monitor_queue())
