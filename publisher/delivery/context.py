"""What every delivery step shares: who this worker is, our idempotency key, and the adapter's context."""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import select, update

from channels.base import DeliveryContext, PostContent
from core.db import get_engine, session_scope
from publisher.domain.models import Delivery, PostVersion
from publisher.services.media import cover_source, is_media_ref

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


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
        # Its own transaction, committed before the adapter makes its next call. Two Core statements on a
        # connection, not an ORM session: a WeChat delivery saves four ids, and a session's set-up, flush and
        # commit events cost more CPU than the statements (profiled). The merge reads the row under its lock:
        # whatever an earlier attempt saved stays.
        with get_engine().begin() as conn:
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
