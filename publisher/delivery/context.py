"""What every delivery step shares: who this worker is, our idempotency key, and the adapter's context."""

from __future__ import annotations

import contextvars
import json
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import NoResultFound

from channels.base import DeliveryContext, PostContent
from channels.errors import NotSent
from core.db import UTCDateTime, get_engine, session_scope, utcnow
from publisher.domain.models import Delivery, PostVersion
from publisher.services.media import cover_source, is_media_ref

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"

#: ``save_progress`` on PostgreSQL: the new ids merged into the saved ones in one statement (a value that is no
#: JSON object, which nothing writes, counts as empty rather than becoming an array).
_MERGE_PROGRESS_SQL = (
    "UPDATE deliveries SET progress = (CASE WHEN jsonb_typeof(progress::jsonb) = 'object' THEN progress::jsonb "
    "ELSE '{}'::jsonb END || CAST(:update AS jsonb))::json, updated_at = :at WHERE id = :id"
)
_MERGE_PROGRESS_PG = text(_MERGE_PROGRESS_SQL).bindparams(bindparam("at", type_=UTCDateTime()))
#: the same, only while the attempt still holds its claim (see :class:`ClaimLost`)
_MERGE_PROGRESS_FENCED_PG = text(_MERGE_PROGRESS_SQL + " AND state = 'sending' AND attempts = :attempt").bindparams(
    bindparam("at", type_=UTCDateTime())
)


class ClaimLost(NotSent):
    """This attempt no longer holds its claim on the delivery: it stayed in ``sending`` past
    ``MATRIX_STUCK_AFTER_S``, so reconcile took it for a dead worker's (and may have handed it to another
    attempt). Raised by a progress save: the WeChat, Weibo and Toutiao adapters save before their call that
    posts, so the attempt stops there and two attempts never both post (a WordPress post, saved after it is made,
    is found again by its slug, unique on its site). Its errors are not recorded; the delivery's new owner
    decides."""


def idempotency_key(delivery_id: int) -> str:
    """Our key for a delivery, stored on the platform (slug, link parameter…) so lookups can find it."""
    return f"mm-{delivery_id}"


def post_content(version: PostVersion, *, with_cover: bool = True, kind: str | None = None) -> PostContent:
    """A version as an adapter of ``kind`` reads it: that platform's own title and text where the editor wrote
    them. An uploaded cover (``media:<id>``) is given as a ``data:`` URI of its bytes, read in a short
    transaction of its own; ``with_cover=False`` where no image is sent (metrics)."""
    cover = version.cover_url
    if with_cover and is_media_ref(cover):
        with session_scope() as s:
            cover = cover_source(s, cover)
    title, body = version.text_for(kind)
    return PostContent(title=title, body=body, summary=version.summary, cover_url=cover)


def delivery_context(
    d: Delivery,
    version: PostVersion,
    depends_url: str | None = None,
    *,
    with_cover: bool = True,
    kind: str | None = None,
    fence: int | None = None,
) -> DeliveryContext:
    """What the adapter needs for one delivery; remote ids it reports are saved at once, each in its own
    transaction. ``fence``: the number of the attempt whose claim each save must still hold (:class:`ClaimLost`
    if it does not); None for a look at the platform outside an attempt (reconcile, retraction, metrics)."""
    delivery_id = d.id

    def save_progress(update_: dict[str, Any]) -> None:
        # Its own transaction, committed before the adapter makes its next call. Core statements on a
        # connection, not an ORM session: a WeChat delivery saves four ids, and a session's set-up, flush and
        # commit events cost more CPU than the statements (profiled). Whatever an earlier attempt saved stays:
        # on PostgreSQL one UPDATE merges the ids into the row (jsonb ``||``, top-level keys, as ``dict`` does);
        # elsewhere the row is read under its lock and written back.
        with get_engine().begin() as conn:
            if conn.dialect.name == "postgresql":
                params = {"id": delivery_id, "update": json.dumps(update_), "at": utcnow(), "attempt": fence}
                done = conn.execute(_MERGE_PROGRESS_PG if fence is None else _MERGE_PROGRESS_FENCED_PG, params)
                if done.rowcount != 1:
                    state = conn.execute(select(Delivery.state).where(Delivery.id == delivery_id)).scalar_one_or_none()
                    raise _lost_or_missing(delivery_id, state)
                return
            row = conn.execute(
                select(Delivery.progress, Delivery.state, Delivery.attempts)
                .where(Delivery.id == delivery_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                raise _lost_or_missing(delivery_id, None)
            saved, state, attempts = row
            if fence is not None and (state != "sending" or attempts != fence):
                raise _lost_or_missing(delivery_id, state)
            conn.execute(
                update(Delivery).where(Delivery.id == delivery_id).values(progress={**(saved or {}), **update_})
            )

    return DeliveryContext(
        delivery_id=d.id,
        idempotency_key=idempotency_key(d.id),
        content=post_content(version, with_cover=with_cover, kind=kind),
        progress=dict(d.progress or {}),
        remote_id=d.remote_id,
        remote_url=d.remote_url,
        depends_on_url=depends_url,
        save_progress=save_progress,
    )


def _lost_or_missing(delivery_id: int, state: str | None) -> Exception:
    """Why a progress save wrote nothing: the delivery is gone (``state`` None), or its claim was taken over."""
    if state is None:
        return NoResultFound(f"delivery {delivery_id} not found")
    return ClaimLost(f"delivery {delivery_id}: this attempt's claim was taken over ({state}); not sent")


_T = TypeVar("_T")
_R = TypeVar("_R")


def side_by_side(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``fn`` of each item, side by side, in order: the first in this thread, each other in a thread of its own
    (in a copy of this thread's context, so its log lines carry the task's ids). For a batch's platform calls,
    which wait on the network: ``fn`` should not raise for what a platform did (whatever it raises is raised
    here once all are done).

    Threads of their own, not a shared pool: a claimed delivery's calls must start at once. Queued behind other
    batches' calls, a delivery could sit in ``sending`` past ``MATRIX_STUCK_AFTER_S`` before its first request
    and be taken for a dead worker's (starting a thread costs well under a millisecond)."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    results: list[Any] = [None] * len(items)
    errors: list[BaseException | None] = [None] * len(items)

    def run(k: int, item: _T) -> None:
        try:
            results[k] = fn(item)
        except BaseException as exc:  # handed to the caller's thread below
            errors[k] = exc

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(run, k, item), name="matrix-batch", daemon=True)
        for k, item in enumerate(items[1:], start=1)
    ]
    for thread in threads:
        thread.start()
    run(0, items[0])
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return results
