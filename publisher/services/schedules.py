"""When a post goes out: schedules, and retrying the deliveries that failed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.broker import Task, enqueue
from core.clock import now
from core.db import after_commit
from core.errors import Conflict, InvalidInput
from publisher.domain import lifecycle
from publisher.domain.models import Delivery, Post, Schedule
from publisher.services.common import audit, get
from publisher.services.people import Principal, require
from publisher.services.views import deliveries_of


def pending_schedules(session: Session, post_id: int) -> list[Schedule]:
    """The post's schedules that have not gone out nor been cancelled."""
    return list(session.scalars(select(Schedule).where(Schedule.post_id == post_id, Schedule.state == "pending")).all())


def apply_pending_schedule(session: Session, post: Post) -> None:
    """An approved post with a pending schedule becomes scheduled, and dispatch is woken."""
    if post.state == "approved" and pending_schedules(session, post.id):
        lifecycle.transition("post", post, "scheduled")
        after_commit(session, enqueue, Task.DISPATCH_DUE)


def schedule_post(session: Session, actor: Principal, post_id: int, at: datetime) -> Schedule:
    """Schedule the post for ``at`` (aware). It publishes then if its current version is approved by then."""
    if at.tzinfo is None:
        raise InvalidInput("time without a zone")
    post = get(session, Post, post_id, lock=True)
    require(session, actor, "post.write", post.organization_id)
    if post.state in ("draft",):
        raise Conflict(f"post {post.id} is a draft; submit it for screening first")
    if post.state not in ("screening", "needs_review", "approved", "scheduled"):
        raise Conflict(f"post {post.id} is {post.state}; it cannot be scheduled")
    if any(d.state == "failed" for d in deliveries_of(session, post.id)):
        # An edited failed post: its deliveries exist; a schedule would make a second set for the same accounts.
        raise Conflict(f"post {post.id} has failed deliveries; retry the post to send them (with its current version)")
    for old in pending_schedules(session, post.id):
        old.state = "cancelled"  # one pending schedule per post: a new time replaces the old one
    schedule = Schedule(post_id=post.id, due_at=at)
    session.add(schedule)
    session.flush()
    audit(session, actor, "post.schedule", post, due_at=at.isoformat())
    if post.state == "approved":
        lifecycle.transition("post", post, "scheduled")
    if at <= now():
        after_commit(session, enqueue, Task.DISPATCH_DUE)
    return schedule


def retry_post(session: Session, actor: Principal, post_id: int) -> list[Delivery]:
    """Retry only the deliveries that failed; the published ones are left alone.

    A failed post that was edited since goes out with its new version, once that is approved: its failed
    deliveries (and any waiting for re-authorisation) take the new version and start afresh.
    """
    post = get(session, Post, post_id, lock=True)
    require(session, actor, "post.write", post.organization_id)
    deliveries = deliveries_of(session, post.id)
    failed = [d for d in deliveries if d.state == "failed"]
    if not failed:
        raise Conflict(f"post {post.id} has no failed delivery to retry")
    edited = any(d.version_id != post.current_version_id for d in failed)
    if edited and post.state != "approved":
        version = post.current_version.number if post.current_version else "?"
        raise Conflict(
            f"post {post.id} was edited (version {version}) and is {post.state}; retry it once that version is approved"
        )
    for delivery in failed:
        lifecycle.transition("delivery", delivery, "pending")
        delivery.next_attempt_at, delivery.last_error = now(), None
    if edited:
        for delivery in deliveries:
            if delivery.state in ("pending", "needs_reauth") and delivery.version_id != post.current_version_id:
                # New content: nothing the old attempts left on the platform (drafts, uploads) is reused.
                delivery.version_id = post.current_version_id
                delivery.progress, delivery.remote_id, delivery.remote_url = {}, None, None
                delivery.outcome_unknown = False
    if post.state != "publishing":
        lifecycle.transition("post", post, "publishing")
    audit(session, actor, "post.retry", post, deliveries=[d.id for d in failed], version=post.current_version_id)
    after_commit(session, enqueue, Task.DISPATCH_DUE)
    return failed


def cancel_schedule(session: Session, actor: Principal, post_id: int) -> Post:
    """Cancel a post's pending schedule: a scheduled post goes back to approved (it keeps its approval)."""
    post = get(session, Post, post_id, lock=True)
    require(session, actor, "post.write", post.organization_id)
    pending = pending_schedules(session, post.id)
    if not pending:
        raise Conflict(f"post {post.id} has no pending schedule to cancel")
    for schedule in pending:
        schedule.state = "cancelled"
    if post.state == "scheduled":
        lifecycle.transition("post", post, "approved")
    audit(session, actor, "post.unschedule", post)
    return post
