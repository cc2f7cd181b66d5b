"""Reconcile: deliveries stuck in sending, unconfirmed or awaiting confirmation are resolved by asking the
platform, never by blind retry."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import or_, select

from channels.base import Channel, DeliveryContext
from channels.errors import ChannelError
from core.broker import Task, enqueue
from core.clock import now
from core.db import after_commit, session_scope
from core.settings import get_settings
from publisher.delivery.context import delivery_context
from publisher.delivery.outcomes import apply_result, lock_post_and_delivery, settle_post, wake_dependants
from publisher.domain import lifecycle
from publisher.domain.models import Delivery, Post, PostVersion
from publisher.services.channels import account_info, make_channel
from publisher.services.common import audit, notify_owner

log = logging.getLogger(__name__)


def reconcile(limit: int = 200) -> dict[str, int]:
    """Resolve deliveries stuck in sending / unconfirmed / awaiting_confirmation by asking the platform."""
    settings = get_settings()
    t = now()
    counts = {"stuck": 0, "unconfirmed": 0, "awaiting": 0, "posts": 0}
    with session_scope() as s:
        stuck = s.scalars(
            select(Delivery)
            .where(Delivery.state == "sending", Delivery.claimed_at < t - timedelta(seconds=settings.stuck_after_s))
            .limit(limit)
        ).all()
        for d in stuck:  # its worker died or hangs: whether it posted is unknown
            lifecycle.transition("delivery", d, "unconfirmed")
            d.outcome_unknown, d.last_error = True, "worker stopped during the attempt"
            audit(s, "reconcile", "delivery.stuck", d, claimed_by=d.claimed_by)
        counts["stuck"] = len(stuck)
    for state, handler in (("unconfirmed", _resolve_unconfirmed), ("awaiting_confirmation", _resolve_awaiting)):
        with session_scope() as s:
            ids = list(
                s.scalars(
                    select(Delivery.id)
                    .where(
                        Delivery.state == state, or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= t)
                    )
                    .limit(limit)
                ).all()
            )
        for delivery_id in ids:
            try:
                handler(delivery_id)
            except ChannelError as exc:  # leave it for the next round
                log.warning("reconcile %s delivery %s: %s", state, delivery_id, exc)
                _note(delivery_id, str(exc))
        counts["unconfirmed" if state == "unconfirmed" else "awaiting"] = len(ids)
    with session_scope() as s:
        for post in s.scalars(select(Post).where(Post.state == "publishing").with_for_update()).all():
            before = post.state
            settle_post(s, post)
            counts["posts"] += before != post.state
    return counts


def _note(delivery_id: int, message: str) -> None:
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        if d is not None:
            d.last_error = message
            d.next_attempt_at = now() + timedelta(seconds=get_settings().reconcile_interval_s)


def _load_for_platform(delivery_id: int, state: str) -> tuple[Channel, DeliveryContext] | None:
    """The adapter and its context for asking the platform about a delivery in ``state`` (None if it moved on).

    The rows are read in a short transaction; the context is built after it: an uploaded cover is read in a
    transaction of its own (``post_content``), which on SQLite would wait for this one's write lock.
    """
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        if d is None or d.state != state:
            return None
        version = s.get(PostVersion, d.version_id)
        depends_url = None
        if d.depends_on_id:
            dep = s.get(Delivery, d.depends_on_id)
            depends_url = dep.remote_url if dep else None
        info = account_info(d.account)
    return make_channel(info), delivery_context(d, version, depends_url)


def _resolve_unconfirmed(delivery_id: int) -> None:
    loaded = _load_for_platform(delivery_id, "unconfirmed")
    if loaded is None:
        return
    channel, ctx = loaded
    try:
        found = channel.lookup(ctx)
    finally:
        channel.close()
    with session_scope() as s:
        post, d = lock_post_and_delivery(s, delivery_id)
        if d.state != "unconfirmed":
            return
        if found is not None:
            apply_result(s, d, found, post)
        else:  # looked, and it is not there: safe to send again (the next attempt looks once more first)
            lifecycle.transition("delivery", d, "retry_wait")
            d.next_attempt_at, d.claimed_by = now(), "queued"
            after_commit(s, enqueue, Task.DELIVER, d.id)
        audit(s, "reconcile", "delivery.reconciled", d, found=found is not None)
        settle_post(s, post)


def _resolve_awaiting(delivery_id: int) -> None:
    loaded = _load_for_platform(delivery_id, "awaiting_confirmation")
    if loaded is None:
        return
    channel, ctx = loaded
    try:
        status = channel.status(ctx)
    finally:
        channel.close()
    with session_scope() as s:
        post, d = lock_post_and_delivery(s, delivery_id)
        if d.state != "awaiting_confirmation":
            return
        if status.state == "published":
            lifecycle.transition("delivery", d, "published")
            d.remote_url, d.published_at = status.url or d.remote_url, now()
            wake_dependants(s, d)
        elif status.state == "failed":
            lifecycle.transition("delivery", d, "failed")
            d.last_error = status.reason or "the platform refused the post"
            notify_owner(s, post, "delivery_failed", f"post {post.id} on {d.account.name}: {d.last_error}")
        elif status.state == "retracted":
            lifecycle.transition("delivery", d, "retracted")
            d.last_error = status.reason or "removed on the platform"
            notify_owner(s, post, "removed_by_platform", f"post {post.id} on {d.account.name}: {d.last_error}")
        else:
            return
        audit(s, "reconcile", f"delivery.{d.state}", d, reason=status.reason, url=status.url)
        settle_post(s, post)
