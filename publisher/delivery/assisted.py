"""Assisted deliveries (a person posts them by hand): the ready-to-paste package, and recording that the post
went up (its URL) or, after a retraction, came down (its URL checked where it can be)."""

from __future__ import annotations

import httpx

from channels.base import PublishResult, get_channel_class
from channels.manual import build_package
from core.db import session_scope
from core.errors import Conflict, InvalidInput
from core.http import OutboundRefused, guarded_client, safe_url
from publisher.delivery.context import idempotency_key, post_content
from publisher.delivery.outcomes import apply_result, can_retract, lock_post_and_delivery, report_leftovers, settle_post
from publisher.domain import lifecycle
from publisher.domain.models import Delivery, Post, PostVersion
from publisher.services.channels import account_info, make_channel
from publisher.services.common import URL_MAX, audit, check_length, get
from publisher.services.people import Principal, require

CHECK_TIMEOUT_S = 10.0  # a removal check waits this long for the copy's page


def package_for(actor: Principal, delivery_id: int) -> bytes:
    """The ZIP an operator downloads to post a delivery by hand."""
    with session_scope() as s:
        d = get(s, Delivery, delivery_id)
        require(s, actor, "delivery.by_hand", d.account.organization_id)
        if d.state != "awaiting_manual":
            raise Conflict(f"delivery {d.id} is {d.state}; packages are for awaiting_manual deliveries")
        v = s.get(PostVersion, d.version_id)
        info = account_info(d.account)
    content = post_content(v, kind=info.kind)
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


def confirm_removed(actor: Principal, delivery_id: int, *, force: bool = False) -> tuple[Delivery, str]:
    """An operator deleted by hand a copy that has no retraction API (its post being retracted): record it.

    Only for accounts without one (manual, assisted Toutiao): an API delivery is retracted by ``matrix post
    retract``, which a person's word must not replace. The copy's URL is checked first, through the guarded
    client: one that still answers 2xx is refused unless ``force`` (a platform that shows a "deleted" notice
    with a 200); one that cannot be reached is recorded with that said. Returns the delivery and the check.
    """
    with session_scope() as s:
        post, d = lock_post_and_delivery(s, delivery_id)
        require(s, actor, "delivery.by_hand", d.account.organization_id)
        _check_removable(post, d)
        url = d.remote_url
    checked = _check_gone(url, force=force)  # outside any transaction: a network call holds no lock
    with session_scope() as s:
        post, d = lock_post_and_delivery(s, delivery_id)
        _check_removable(post, d)  # it may have moved while the URL was checked
        lifecycle.transition("delivery", d, "retracted")
        d.last_error = None
        audit(s, actor, "delivery.removed_by_hand", d, url=d.remote_url, check=checked)
        settle_post(s, post)
        report_leftovers(s, post)
        return d, checked


def _check_removable(post: Post, d: Delivery) -> None:
    if post.state not in lifecycle.RETRACTION:
        raise Conflict(f"post {post.id} is {post.state}; retract the post first (`matrix post retract {post.id}`)")
    if can_retract(d):
        raise Conflict(
            f"delivery {d.id} on {d.account.name} ({d.account.kind}) is retracted through the platform's API, not by "
            f"hand: `matrix post retract {post.id}` tries it again"
        )
    if d.state not in ("published", "retract_failed"):
        raise Conflict(f"delivery {d.id} is {d.state}; only a published delivery can be recorded as removed")


def _check_gone(url: str | None, *, force: bool) -> str:
    """What a GET of the copy's URL says: gone (4xx), or not checked (no URL, unreachable, refused by the
    outbound guard); a copy still served (2xx) raises :class:`Conflict` unless ``force``."""
    if not url:
        return "not checked: no URL recorded"
    try:
        with guarded_client(timeout=CHECK_TIMEOUT_S, max_redirects=3) as client:
            with client.stream("GET", url) as response:  # the status is the answer; the body is never read
                status = response.status_code
    except (httpx.HTTPError, OutboundRefused) as exc:
        return f"not checked: {safe_url(url)} cannot be reached ({exc.__class__.__name__})"
    if 200 <= status < 300:
        if force:
            return f"{safe_url(url)} still answers HTTP {status}; recorded as removed anyway (--force)"
        raise Conflict(
            f"{safe_url(url)} still answers HTTP {status}: delete it on the platform first "
            "(or --force if the platform shows a removal notice there)"
        )
    if 400 <= status < 500:
        return f"checked: {safe_url(url)} answers HTTP {status}"
    return f"not checked: {safe_url(url)} answers HTTP {status}"
