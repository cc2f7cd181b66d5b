"""Read models: the views of posts, deliveries, accounts, reviews and notifications that the CLI, the API and
the web pages all render. One query per view, here; the interfaces only format."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from channels.base import Channel, get_channel_class
from core.audit import events as audit_events
from core.clock import iso_local
from core.clock import now as clock_now
from core.db import ID_MAX
from core.errors import InvalidInput, NotFound
from core.notify import mark_read as mark_notifications_read
from core.notify import notifications_for
from publisher.domain.lifecycle import PostState
from publisher.domain.models import (
    Account,
    AuditEvent,
    Delivery,
    MetricSnapshot,
    Post,
    PostVersion,
    Schedule,
    Screening,
)
from publisher.services.common import get
from publisher.services.people import PERMISSIONS, Principal, holds, require, visible_orgs


def deliveries_of(session: Session, post_id: int) -> list[Delivery]:
    """The post's deliveries, newest schedule last."""
    return list(session.scalars(select(Delivery).where(Delivery.post_id == post_id).order_by(Delivery.id)).all())


def latest_screening(session: Session, version_id: int | None) -> Screening | None:
    """The screening of a version, if done."""
    if version_id is None:
        return None
    return session.scalar(select(Screening).where(Screening.version_id == version_id))


def hit_context(version: PostVersion, start: int, end: int, width: int = 12) -> dict[str, Any]:
    """Where a screening hit is, for a reviewer: the field (title, summary, body), the offsets inside it, and
    up to ``width`` characters either side (hit offsets index the screened text, the fields joined by
    line breaks)."""
    offset = 0
    for field, text in version.screened_parts():
        if start < offset + len(text) + 1:
            a, b = start - offset, min(end - offset, len(text))
            return {"field": field, "start": a, "end": b, "before": text[max(0, a - width) : a],
                    "after": text[b : b + width]}  # fmt: skip
        offset += len(text) + 1
    return {"field": "body", "start": start, "end": end, "before": "", "after": ""}


def _with_context(verdict: dict[str, Any], version: PostVersion) -> dict[str, Any]:
    hits = [{**h, "where": hit_context(version, h["start"], h["end"])} for h in verdict.get("hits", [])]
    return {**verdict, "hits": hits}


def post_summary(session: Session, post: Post) -> dict[str, Any]:
    """A JSON-able view of a post with its deliveries (for `post show` and the API)."""
    version = post.current_version
    screening = latest_screening(session, post.current_version_id)
    schedule = session.scalar(select(Schedule).where(Schedule.post_id == post.id).order_by(Schedule.id.desc()).limit(1))
    return {
        "id": post.id,
        "state": post.state,
        "version": version.number if version else None,
        "content_hash": version.content_hash if version else None,
        "title": version.title if version else None,
        "summary": version.summary if version else None,
        "variants": dict(version.variants or {}) if version else {},
        "targets": [t.account_id for t in post.targets],
        "screening": _with_context(screening.verdict, version) if screening and version else None,
        "schedule": ({"due_at": iso_local(schedule.due_at), "state": schedule.state} if schedule else None),
        "deliveries": [delivery_summary(d) for d in deliveries_of(session, post.id)],
    }


def delivery_summary(d: Delivery) -> dict[str, Any]:
    """A JSON-able view of one delivery."""
    return {
        "id": d.id,
        "account_id": d.account_id,
        "account": d.account.name,
        "kind": d.account.kind,
        "state": d.state,
        "attempts": d.attempts,
        "remote_id": d.remote_id,
        "remote_url": d.remote_url,
        "last_error": d.last_error,
        "next_attempt_at": iso_local(d.next_attempt_at),
        "published_at": iso_local(d.published_at),
    }


def latest_metrics(s: Session, post_id: int) -> dict[int, MetricSnapshot]:
    """The newest snapshot per delivery of a post."""
    newest = (
        select(MetricSnapshot.delivery_id, func.max(MetricSnapshot.id).label("mid"))
        .join(Delivery, Delivery.id == MetricSnapshot.delivery_id)
        .where(Delivery.post_id == post_id)
        .group_by(MetricSnapshot.delivery_id)
        .subquery()
    )
    snaps = s.scalars(select(MetricSnapshot).join(newest, MetricSnapshot.id == newest.c.mid)).all()
    return {m.delivery_id: m for m in snaps}


def metrics_view(m: MetricSnapshot | None) -> dict[str, Any] | None:
    """A JSON-able view of one metric snapshot."""
    if m is None:
        return None
    return {"reads": m.reads, "likes": m.likes, "shares": m.shares, "comments": m.comments,
            "taken_at": iso_local(m.taken_at)}  # fmt: skip


def visible_post(session: Session, actor: Principal, post_id: int) -> Post:
    """A post ``actor`` may see; one they may not is not found (its existence is not theirs to know)."""
    post = get(session, Post, post_id)
    if not holds(session, actor, PERMISSIONS["post.view"], post.organization_id):
        raise NotFound(f"post {post_id} not found")
    return post


def post_detail(session: Session, actor: Principal, post_id: int) -> dict[str, Any]:
    """:func:`post_summary` of one post with each delivery's newest engagement numbers (`post show`, the API)."""
    post = visible_post(session, actor, post_id)
    summary = post_summary(session, post)
    metrics = latest_metrics(session, post.id)
    for d in summary["deliveries"]:
        d["metrics"] = metrics_view(metrics.get(d["id"]))
    return summary


LIST_MAX = 500  # the most rows one page of a list holds (``limit``)


def check_page(limit: int, offset: int = 0) -> None:
    """:class:`InvalidInput` unless ``limit`` is 1..:data:`LIST_MAX` and ``offset`` 0..ID_MAX (past that the
    database would fail: SQLite's integers end at 2**63)."""
    if not 1 <= limit <= LIST_MAX:
        raise InvalidInput(f"limit must be between 1 and {LIST_MAX}")
    if not 0 <= offset <= ID_MAX:
        raise InvalidInput(f"offset must be between 0 and {ID_MAX}")


def post_rows(
    session: Session, actor: Principal, *, state: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The posts ``actor`` may see, newest first: id, state, title, last change (`post list`, ``GET /posts``)."""
    if state is not None and state not in PostState.__members__.values():
        raise InvalidInput(f"unknown post state {state!r}; choose from {', '.join(PostState)}")
    check_page(limit, offset)
    # the titles in one more query, not one per row
    q = select(Post).options(selectinload(Post.current_version)).order_by(Post.id.desc()).limit(limit).offset(offset)
    orgs = visible_orgs(session, actor, "post.view")
    if orgs is not None:
        q = q.where(Post.organization_id.in_(orgs))
    if state:
        q = q.where(Post.state == state)
    return [
        {
            "id": p.id,
            "state": p.state,
            "title": p.current_version.title if p.current_version else None,
            "updated_at": iso_local(p.updated_at),
        }
        for p in session.scalars(q).all()
    ]


def account_rows(
    session: Session, actor: Principal, *, limit: int | None = None, offset: int = 0
) -> list[dict[str, Any]]:
    """Accounts by id with their health (`account list`, ``GET /accounts``); never their credentials.
    ``limit`` None: every account (the CLI); the API pages."""
    q = select(Account).order_by(Account.id)
    orgs = visible_orgs(session, actor, "account.view")
    if orgs is not None:
        q = q.where(Account.organization_id.in_(orgs))
    if limit is not None:
        check_page(limit, offset)
        q = q.limit(limit).offset(offset)
    accounts = session.scalars(q).all()
    last_hour, today = _posts_sent(session, [a.id for a in accounts])
    return [
        {
            "id": a.id,
            "kind": a.kind,
            "name": a.name,
            "organization": a.organization.name,
            "organization_id": a.organization_id,
            "status": a.status,
            "status_reason": a.status_reason,
            "paused_until": iso_local(a.paused_until),
            # quota used: what the claim counts against the platform's hourly limit, and the day's posts
            "sent_last_hour": last_hour.get(a.id, 0),
            "posts_per_hour": _channel_class(a.kind).posts_per_hour,
            "sent_today": today.get(a.id, 0),
        }
        for a in accounts
    ]


def _channel_class(kind: str) -> type[Channel]:
    return get_channel_class(kind)


# a delivery claimed and then in one of these did not reach the platform: it does not count against a limit
# (the claim in publisher.delivery.deliver counts the same way)
_NOT_SENT_STATES = ("pending", "retry_wait", "cancelled", "failed")


def _posts_sent(session: Session, account_ids: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Per account: deliveries claimed in the last hour, and since the start of today (UTC day), sent or
    being sent. Two grouped queries, whatever the number of accounts."""
    if not account_ids:
        return {}, {}
    t = clock_now()
    day_start = t.replace(hour=0, minute=0, second=0, microsecond=0)

    def counts(since: datetime) -> dict[int, int]:
        rows = session.execute(
            select(Delivery.account_id, func.count())
            .where(
                Delivery.account_id.in_(account_ids),
                Delivery.claimed_at >= since,
                Delivery.state.notin_(_NOT_SENT_STATES),
            )
            .group_by(Delivery.account_id)
        ).all()
        return {account_id: n for account_id, n in rows}

    return counts(t - timedelta(hours=1)), counts(day_start)


def review_queue(session: Session, actor: Principal, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Posts waiting for review that ``actor`` may review, oldest first, with the screening's evidence."""
    check_page(limit, offset)
    q = (
        select(Post)
        .options(selectinload(Post.current_version))
        .where(Post.state == PostState.NEEDS_REVIEW)
        .order_by(Post.id)
        .limit(limit)
        .offset(offset)
    )
    orgs = visible_orgs(session, actor, "post.review")
    if orgs is not None:
        q = q.where(Post.organization_id.in_(orgs))
    posts = session.scalars(q).all()
    return [post_summary(session, p) for p in posts]


def notification_rows(
    session: Session,
    actor: Principal,
    *,
    unread_only: bool = True,
    mark_read: bool = False,
    limit: int = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The acting person's notifications, oldest first (the newest ``limit`` after skipping ``offset`` newer ones);
    ``mark_read`` marks those shown as read."""
    check_page(limit, offset)
    if actor.user_id is None:
        return []
    shown = notifications_for(session, actor.user_id, unread_only=unread_only, limit=limit, offset=offset)
    rows = [
        {"id": n.id, "kind": n.kind, "post": n.post_id, "message": n.message, "created_at": iso_local(n.created_at)}
        for n in shown
    ]
    if mark_read:
        mark_notifications_read(shown)
    return rows


def delivery_timeline(session: Session, actor: Principal, post_id: int) -> dict[int, list[dict[str, Any]]]:
    """Each delivery of a post ``actor`` may see, as its audit trail: what happened when (attempts, errors,
    state changes), oldest first — the post page's timeline."""
    post = visible_post(session, actor, post_id)
    ids = [d.id for d in deliveries_of(session, post.id)]
    if not ids:
        return {}
    rows = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.object_type == "delivery", AuditEvent.object_id.in_(ids))
        .order_by(AuditEvent.id)
    ).all()
    timeline: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for e in rows:
        timeline[e.object_id].append({"at": iso_local(e.at), "action": e.action, "detail": e.detail, "by": e.actor})
    return timeline


def audit_rows(
    session: Session,
    actor: Principal,
    *,
    user: str | None = None,
    object_type: str | None = None,
    object_id: int | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The audit log, newest first, filtered by user, object, action and time (admins): ``GET /audit``, the
    audit page."""
    require(session, actor, "audit.view")
    check_page(limit, offset)
    rows = audit_events(
        session,
        actor=user,
        object_type=object_type,
        object_id=object_id,
        action=action,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return [
        {"id": e.id, "at": iso_local(e.at), "actor": e.actor, "actor_id": e.actor_id, "source": e.source,
         "action": e.action, "object_type": e.object_type, "object_id": e.object_id, "detail": e.detail}
        for e in rows
    ]  # fmt: skip
