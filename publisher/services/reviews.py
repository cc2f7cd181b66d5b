"""A reviewer's decision on a post's current version, bound to its content hash."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.errors import Conflict, InvalidInput
from publisher.domain import lifecycle
from publisher.domain.models import Post, ReviewDecision
from publisher.services.common import NAME_MAX, REASON_MAX, audit, check_length, get
from publisher.services.schedules import apply_pending_schedule, pending_schedules


def review(
    session: Session,
    post_id: int,
    *,
    approve: bool,
    reason: str = "",
    reviewer: str = "reviewer",
    content_hash: str | None = None,
) -> ReviewDecision:
    """A reviewer's decision on the current version; ``content_hash`` guards against approving stale content."""
    check_length("reason", reason.strip(), REASON_MAX)
    check_length("reviewer name", reviewer, NAME_MAX)
    post = get(session, Post, post_id, lock=True)
    version = post.current_version
    assert version is not None  # noqa: S101 - a post is made with its first version; for the type checker
    if content_hash and content_hash != version.content_hash:
        raise Conflict(f"post {post.id} changed since you read it; reload and review version {version.number}")
    if not approve and not reason.strip():
        raise InvalidInput("a rejection needs a reason")
    if approve and post.state != "needs_review":
        raise Conflict(f"post {post.id} is {post.state}; only a post in needs_review can be approved")
    if not approve and post.state not in ("needs_review", "approved", "scheduled"):
        raise Conflict(f"post {post.id} is {post.state}; it cannot be rejected now")
    decision = ReviewDecision(
        post_id=post.id,
        version_id=version.id,
        content_hash=version.content_hash,
        decision="approve" if approve else "reject",
        reason=reason.strip(),
        reviewer=reviewer,
    )
    session.add(decision)
    lifecycle.transition("post", post, "approved" if approve else "rejected")
    if not approve:
        for schedule in pending_schedules(session, post.id):
            schedule.state = "cancelled"
    audit(session, reviewer, "post.approve" if approve else "post.reject", post, reason=reason, version=version.number)
    if approve:
        apply_pending_schedule(session, post)
    return decision
