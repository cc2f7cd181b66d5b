"""Assisted deliveries (a person posts them by hand): the ready-to-paste package, and recording that the post
went up (its URL) or, after a retraction, came down."""

from __future__ import annotations

from channels.base import PublishResult, get_channel_class
from channels.manual import build_package
from core.db import session_scope
from core.errors import Conflict, InvalidInput
from publisher.delivery.context import idempotency_key, post_content
from publisher.delivery.outcomes import apply_result, lock_post_and_delivery, settle_post
from publisher.domain import lifecycle
from publisher.domain.models import Delivery, PostVersion
from publisher.services.channels import account_info, make_channel
from publisher.services.common import URL_MAX, audit, check_length, get
from publisher.services.people import Principal, require


def package_for(actor: Principal, delivery_id: int) -> bytes:
    """The ZIP an operator downloads to post a delivery by hand."""
    with session_scope() as s:
        d = get(s, Delivery, delivery_id)
        require(s, actor, "delivery.by_hand", d.account.organization_id)
        if d.state != "awaiting_manual":
            raise Conflict(f"delivery {d.id} is {d.state}; packages are for awaiting_manual deliveries")
        v = s.get(PostVersion, d.version_id)
        info = account_info(d.account)
    content = post_content(v)
    channel = make_channel(info)
    try:
        rendered = channel.render(content)
    finally:
        channel.close()
    platform = get_channel_class(info.kind).display_name or info.kind
    return build_package(content, rendered, delivery_id=delivery_id, platform=platform)


def confirm_manual(actor: Principal, delivery_id: int, url: str) -> Delivery:
    """An operator posted an assisted delivery by hand: record its URL; it counts as published."""
    check_length("URL", url, URL_MAX)
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"not a URL: {url!r}")
    with session_scope() as s:
        post, d = lock_post_and_delivery(s, delivery_id)
        require(s, actor, "delivery.by_hand", d.account.organization_id)
        if d.state != "awaiting_manual":
            raise Conflict(f"delivery {d.id} is {d.state}; only an awaiting_manual delivery can be confirmed")
        apply_result(s, d, PublishResult(remote_id=d.remote_id or idempotency_key(d.id), url=url), post)
        audit(s, actor, "delivery.confirmed", d, url=url)
        settle_post(s, post)
        return d


def confirm_removed(actor: Principal, delivery_id: int) -> Delivery:
    """An operator deleted by hand a delivery that has no retraction API (after its post was retracted)."""
    with session_scope() as s:
        post, d = lock_post_and_delivery(s, delivery_id)
        require(s, actor, "delivery.by_hand", d.account.organization_id)
        if post.state != "retracted":
            raise Conflict(f"post {post.id} is {post.state}; retract the post first (`matrix post retract {post.id}`)")
        if d.state != "published":
            raise Conflict(f"delivery {d.id} is {d.state}; only a published delivery can be recorded as removed")
        lifecycle.transition("delivery", d, "retracted")
        audit(s, actor, "delivery.removed_by_hand", d, url=d.remote_url)
        return d
