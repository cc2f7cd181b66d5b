"""Retraction: a post removed from every platform at once, reported per account."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from channels.errors import ChannelError
from core.db import session_scope
from core.errors import Conflict
from publisher.delivery.context import delivery_context
from publisher.domain import lifecycle
from publisher.domain.models import Delivery, Post, PostVersion
from publisher.services.channels import account_info, make_channel
from publisher.services.common import audit, get
from publisher.services.people import SYSTEM, Principal, require


def retract_post(actor: Principal, post_id: int) -> list[dict[str, Any]]:
    """Retract a post everywhere. Returns one line per delivery: account, outcome, detail."""
    with session_scope() as s:
        post = get(s, Post, post_id, lock=True)
        require(s, actor, "post.retract", post.organization_id)
        if post.state not in ("published", "partially_published", "publishing", "failed"):
            raise Conflict(f"post {post.id} is {post.state}; only a post that went out can be retracted")
        lifecycle.transition("post", post, "retracted")
        audit(s, actor, "post.retract", post)
        ids = [d.id for d in s.scalars(select(Delivery).where(Delivery.post_id == post.id)).all()]
    return [retract_delivery(i, actor) for i in ids]


def retract_delivery(delivery_id: int, actor: Principal = SYSTEM) -> dict[str, Any]:
    """Retract (or cancel) one delivery; idempotent."""
    with session_scope() as s:
        d = get(s, Delivery, delivery_id, lock=True)
        line = {"delivery": d.id, "account": d.account.name, "kind": d.account.kind}
        if d.state in ("pending", "retry_wait", "needs_reauth", "failed", "awaiting_manual"):
            lifecycle.transition("delivery", d, "cancelled")
            audit(s, actor, "delivery.cancelled", d)
            return {**line, "outcome": "cancelled", "detail": "never posted"}
        if d.state in ("retracted", "cancelled"):
            return {**line, "outcome": d.state, "detail": "already"}
        if d.state in ("sending", "unconfirmed"):
            return {**line, "outcome": "in_flight", "detail": "retracted automatically once it settles"}
        version = s.get(PostVersion, d.version_id)
        info = account_info(d.account)
        ctx = delivery_context(d, version, with_cover=False)
    channel = make_channel(info)  # the instance decides: an assisted account of an API platform has no API
    if not channel.supports_retract:
        channel.close()
        name = channel.display_name or info.kind
        return {
            **line,
            "outcome": "manual",
            "detail": f"{name}: delete it by hand, then `matrix delivery removed {delivery_id}`",
        }
    try:
        channel.retract(ctx)
    except ChannelError as exc:
        with session_scope() as s:
            d = get(s, Delivery, delivery_id)
            d.last_error = f"retraction failed: {exc}"
            audit(s, actor, "delivery.retract_failed", d, error=str(exc))
        return {**line, "outcome": "error", "detail": str(exc)}
    finally:
        channel.close()
    with session_scope() as s:
        d = get(s, Delivery, delivery_id, lock=True)
        if d.state in ("published", "awaiting_confirmation"):
            lifecycle.transition("delivery", d, "retracted")
        audit(s, actor, "delivery.retracted", d)
    return {**line, "outcome": "retracted", "detail": ""}
