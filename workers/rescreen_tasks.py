"""Celery tasks that screen what is live again when the rules change (:mod:`publisher.services.rescreen`).

Both run on the screening queue, and new screenings go first: the scan (beat, and a wake-up after a term-list
change or ``matrix post rescreen``) takes one bounded batch of due posts only while no screening message waits,
and a batch, when done, asks for the next only while the queue is still empty. A new screening therefore waits
for at most the batch a worker is in (``MATRIX_RESCREEN_BATCH`` posts). The database says what is due, so a lost
message only delays a re-screen to the next beat tick.
"""

from __future__ import annotations

import logging

from core.broker import Task, queue_depths
from core.db import session_scope
from core.settings import get_settings
from publisher.services import rescreen
from workers.app import SCREENING_QUEUE, celery_app

log = logging.getLogger(__name__)


def _screening_idle() -> bool:
    """True when no message waits in the screening queue (this task's own was taken already)."""
    try:
        return queue_depths([SCREENING_QUEUE]).get(SCREENING_QUEUE, 0) == 0
    except Exception:
        # cannot tell: go on with one bounded batch (a new screening waits for it at most)
        log.warning("cannot read the screening queue's depth; re-screening one batch", exc_info=True)
        return True


@celery_app.task(name=Task.RESCREEN_SCAN.value)
def rescreen_scan() -> int:
    """Find up to one batch of live posts screened against other rules and queue their re-screen; the number
    queued (0 while new screenings wait: the next tick tries again)."""
    if not _screening_idle():
        return 0
    with session_scope() as session:
        due = rescreen.due_posts(session, limit=get_settings().rescreen_batch)
    if due:
        rescreen_batch.delay(due)
    return len(due)


@celery_app.task(name=Task.RESCREEN_BATCH.value)
def rescreen_batch(post_ids: list[int]) -> dict[str, int]:
    """Screen a batch of live posts again and record each outcome; then, if the queue is idle and this batch
    did something, scan for the next at once rather than at the next beat tick."""
    counts = rescreen.rescreen_posts([int(i) for i in post_ids])
    if counts["passed"] + counts["flagged"] and _screening_idle():
        rescreen_scan.delay()
    return counts
