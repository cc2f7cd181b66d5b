"""Celery tasks. Thin: they take ids, call a service, and let the service record the outcome.

No task schedules far-future work with ETA/countdown: due work is found by polling the database
(``dispatch_due``, ``reconcile``). Short countdowns are used only as early wake-ups for retries; if one is
lost, the poller finds the delivery anyway.
"""

from __future__ import annotations

import logging

from celery import Celery
from kombu.exceptions import ChannelError

from core.broker import Task
from publisher.delivery import deliver as deliver_engine
from publisher.delivery import dispatch, metrics, retract
from publisher.delivery import reconcile as reconcile_engine
from publisher.delivery.outcomes import enqueue_in_batches
from publisher.services import reviews, screening
from workers.app import QUEUE, SCREENING_QUEUE, celery_app

log = logging.getLogger(__name__)


@celery_app.task(name=Task.SCREEN_VERSION.value)
def screen_version(version_id: int) -> str | None:
    """Screen one post version with the moderation engine (outside any transaction: seconds for a long post)."""
    return screening.run_screening(version_id).decision


@celery_app.task(name=Task.DISPATCH_DUE.value)
def dispatch_due() -> int:
    """Beat: turn due schedules into deliveries and fan them out in batches (``deliver_many``)."""
    ids = dispatch.dispatch_due(requeue_stale=_queue_is_empty(celery_app, QUEUE))
    enqueue_in_batches(Task.DELIVER, Task.DELIVER_MANY, ids)
    return len(ids)


def _queue_is_empty(app: Celery, queue: str) -> bool:
    """True when no message waits in our queue: only then can a delivery marked queued have lost its message."""
    try:
        with app.connection_for_write() as conn:
            _name, count, _consumers = conn.default_channel.queue_declare(queue=queue, passive=True)
        return count == 0
    except Exception as exc:
        # Redis keeps no key for an empty list, so an empty queue reads as "not found": that is an answer.
        if not (isinstance(exc, ChannelError) and str(getattr(exc, "reply_code", "")) == "404"):
            # cannot tell: requeue (duplicates are harmless, the claim stops them)
            log.warning("cannot read the queue depth; requeueing stale deliveries", exc_info=True)
        return True


@celery_app.task(name=Task.DELIVER.value)
def deliver(delivery_id: int) -> str:
    """Claim and send one delivery (no-op if another worker has it or it is not due)."""
    return deliver_engine.deliver(delivery_id)


@celery_app.task(name=Task.DELIVER_MANY.value)
def deliver_many(delivery_ids: list[int]) -> dict[str, str]:
    """Claim, send and record a slice of a fan-out together (``MATRIX_DELIVERY_BATCH`` deliveries: one claim,
    the platform calls side by side, one record); those another worker has, or not due, are skipped."""
    return {str(k): v for k, v in deliver_engine.deliver_many(delivery_ids).items()}


@celery_app.task(name=Task.RECONCILE.value)
def reconcile() -> dict[str, int]:
    """Beat: resolve deliveries stuck in sending / unconfirmed / awaiting_confirmation, wake retractions whose
    message was lost, and wake up the screening of posts whose screening message was lost."""
    counts = reconcile_engine.reconcile()
    # Only when nothing waits in the queue: behind a backlog, a screening message is late, not lost.
    counts["screenings"] = screening.requeue_stale_screenings() if _queue_is_empty(celery_app, SCREENING_QUEUE) else 0
    counts.update(reviews.remind_overdue_reviews())  # review steps past their deadline: remind, then escalate
    return counts


@celery_app.task(name=Task.CHECK_DELIVERY.value)
def check_delivery(delivery_id: int, checks: int = 1) -> str:
    """Look at one settling or unconfirmed delivery on its platform now (an early wake-up: reconcile looks at
    whatever this misses)."""
    return reconcile_engine.check_delivery(delivery_id, checks)


@celery_app.task(name=Task.CHECK_DELIVERIES.value)
def check_deliveries(delivery_ids: list[int], checks: int = 1) -> dict[str, str]:
    """Look at a batch's settling deliveries on their platforms together (one read, the calls side by side,
    one record); reconcile looks at whatever this misses."""
    return {str(k): v for k, v in reconcile_engine.check_deliveries(delivery_ids, checks).items()}


@celery_app.task(name=Task.COLLECT_METRICS.value)
def collect_metrics() -> int:
    """Beat: snapshot engagement numbers of published deliveries."""
    return metrics.collect_metrics()


@celery_app.task(name=Task.RETRACT_DELIVERY.value)
def retract_delivery(delivery_id: int) -> dict:
    """One attempt to retract a ``retracting`` delivery (a no-op for any other state, or while another worker
    has it); a transient failure schedules the next attempt itself, and reconcile wakes one whose message is lost."""
    return retract.retract_delivery(delivery_id)
