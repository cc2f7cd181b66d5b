"""The monitor's Celery tasks, on the monitor's own queue (:mod:`monitor.queue` names and routes them).

Thin, as :mod:`workers.tasks`: beat's ``poll_due`` claims due sources and fans out one ``poll_source`` each;
``poll_source`` runs the pipeline (:func:`monitor.pipeline.poll_source`), which records every outcome on the
source itself, so nothing is retried by Celery: a failed fetch is rescheduled with backoff by the pipeline.
Alerts likewise: ``send_alert`` sends one alert on one channel (:func:`monitor.alerting.deliver`), which records
a transient failure as a retry with backoff on the send itself; beat's ``send_due`` brings due sends back.
Daily reports: beat's ``send_reports`` adds each schedule's sends of the day (once: a unique key) and fans out
``send_report``, which sends one (:func:`monitor.report_schedule.deliver_report`) and records its outcome.
"""

from __future__ import annotations

from typing import Any

from celery import group
from celery.signals import celeryd_after_setup

from core.db import session_scope
from monitor import alerting, bursts, pipeline, report_schedule, services
from monitor.queue import MonitorTask
from monitor.settings import get_monitor_settings, monitor_queue
from workers.app import KIND, celery_app


@celery_app.task(name=MonitorTask.POLL_DUE.value)
def poll_due() -> int:
    """Beat: claim the sources that are due and poll them ``poll_chunk`` to a task (fetched concurrently within
    each host's limits, scored in one batch, stored in one transaction: one message per chunk, not per source)."""
    settings = get_monitor_settings()
    with session_scope() as session:
        ids = services.claim_due(session, limit=settings.poll_batch, lease_s=pipeline.poll_lease_s(settings))
    chunk = max(1, settings.poll_chunk)
    if ids:
        group(poll_sources.si(ids[i : i + chunk]) for i in range(0, len(ids), chunk)).apply_async(
            queue=monitor_queue(settings)
        )
    return len(ids)


@celery_app.task(name=MonitorTask.POLL_SOURCES.value)
def poll_sources(source_ids: list[int]) -> list[dict[str, Any]]:
    """Poll a chunk of sources: each fetched, parsed, stored once, clustered, scored, matched, alerted."""
    return [outcome.to_dict() for outcome in pipeline.poll_sources(source_ids)]


@celery_app.task(name=MonitorTask.POLL_SOURCE.value)
def poll_source(source_id: int) -> dict[str, Any]:
    """Poll one source: fetch, parse, store once, cluster, score, rules, alerts."""
    return pipeline.poll_source(source_id).to_dict()


@celeryd_after_setup.connect
def _consume_monitor_queue(instance: Any, **_kwargs: Any) -> None:
    # `matrix worker` names the publisher's queue with -Q; the shared worker of the embedded default takes the
    # monitor's too (Celery's documented way to add a queue at start-up). Off: a worker of its own does.
    if get_monitor_settings().shared_worker and KIND == "all":
        instance.app.amqp.queues.select_add(monitor_queue())


@celery_app.task(name=MonitorTask.SEND_ALERT.value)
def send_alert(send_id: int) -> str:
    """Send one alert on one channel: its remaining parts, in order (the service records every outcome)."""
    return alerting.deliver(send_id)


@celery_app.task(name=MonitorTask.SEND_DUE.value)
def send_due() -> int:
    """Beat: alert sends that are due again (quiet hours over, a retry's time come, a wake-up lost)."""
    with session_scope() as session:
        ids = alerting.due_sends(session)
    if ids:
        group(send_alert.si(i) for i in ids).apply_async(queue=monitor_queue(get_monitor_settings()))
    return len(ids)


@celery_app.task(name=MonitorTask.DETECT_BURSTS.value)
def detect_bursts() -> int:
    """Beat: this hour's bursts (rules, needs, stories against their baselines), each alerted once."""
    with session_scope() as session:
        return len(bursts.detect(session, get_monitor_settings()))


@celery_app.task(name=MonitorTask.SEND_REPORTS.value)
def send_reports() -> int:
    """Beat: the daily reports whose time has come (each once per day and target), sent one task each."""
    with session_scope() as session:
        return len(report_schedule.queue_due(session))  # each enqueued when this transaction commits


@celery_app.task(name=MonitorTask.SEND_REPORT.value)
def send_report(send_id: int) -> str:
    """Send one day's report to one target (the service records every outcome on the send)."""
    return report_schedule.deliver_report(send_id)
