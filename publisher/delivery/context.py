"""What every delivery step shares: who this worker is, our idempotency key, and the adapter's context."""

from __future__ import annotations

import contextvars
import json
import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import NoResultFound

from channels.base import DeliveryContext, PostContent
from core.db import UTCDateTime, get_engine, session_scope, utcnow
from core.settings import get_settings
from publisher.domain.models import Delivery, PostVersion
from publisher.services.media import cover_source, is_media_ref

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"

#: ``save_progress`` on PostgreSQL: the new ids merged into the saved ones in one statement (a value that is no
#: JSON object, which nothing writes, counts as empty rather than becoming an array).
_MERGE_PROGRESS_PG = text(
    "UPDATE deliveries SET progress = (CASE WHEN jsonb_typeof(progress::jsonb) = 'object' THEN progress::jsonb "
    "ELSE '{}'::jsonb END || CAST(:update AS jsonb))::json, updated_at = :at WHERE id = :id"
).bindparams(bindparam("at", type_=UTCDateTime()))


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
) -> DeliveryContext:
    """What the adapter needs for one delivery; remote ids it reports are saved at once, each in its own transaction."""
    delivery_id = d.id

    def save_progress(update_: dict[str, Any]) -> None:
        # Its own transaction, committed before the adapter makes its next call. Core statements on a
        # connection, not an ORM session: a WeChat delivery saves four ids, and a session's set-up, flush and
        # commit events cost more CPU than the statements (profiled). Whatever an earlier attempt saved stays:
        # on PostgreSQL one UPDATE merges the ids into the row (jsonb ``||``, top-level keys, as ``dict`` does);
        # elsewhere the row is read under its lock and written back.
        with get_engine().begin() as conn:
            if conn.dialect.name == "postgresql":
                done = conn.execute(
                    _MERGE_PROGRESS_PG, {"id": delivery_id, "update": json.dumps(update_), "at": utcnow()}
                )
                if done.rowcount != 1:
                    raise NoResultFound(f"delivery {delivery_id} not found")
                return
            saved = conn.execute(
                select(Delivery.progress).where(Delivery.id == delivery_id).with_for_update()
            ).scalar_one()
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


_T = TypeVar("_T")
_R = TypeVar("_R")
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _side_pool() -> ThreadPoolExecutor:
    """The process's threads for a batch's platform calls: as many as its worker threads' batches can use at
    once; made on first use (after a prefork worker's fork), its threads started as they are needed."""
    global _pool
    with _pool_lock:
        if _pool is None:
            settings = get_settings()
            size = max(1, settings.delivery_threads * (settings.delivery_batch - 1))
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="matrix-batch")
        return _pool


def side_by_side(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``fn`` of each item, side by side, in order: the first in this thread, the others in the process's batch
    threads, each in a copy of this thread's context (its log lines carry the task's ids). For a batch's
    platform calls, which wait on the network: ``fn`` must not raise for what a platform did."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    pool = _side_pool()
    futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items[1:]]
    first = fn(items[0])
    return [first, *(future.result() for future in futures)]
