"""Recording outcomes: the lock order, applying a platform's answer, waking dependants, settling the post."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import PublishResult
from core.broker import Task, enqueue
from core.clock import now
from core.db import after_commit, id_in_range
from core.errors import NotFound
from publisher.delivery.context import WORKER_ID
from publisher.domain import lifecycle
from publisher.domain.models import Delivery, Post
from publisher.services.common import audit, get


def lock_post_and_delivery(s: Session, delivery_id: int) -> tuple[Post, Delivery]:
    """Lock the delivery's post, then the delivery: always in this order, so recording outcomes of one
    post's deliveries is serialised (the post state derived from them never misses a concurrent change)."""
    post_id = None
    if id_in_range(delivery_id):  # out of range the database would fail rather than find nothing
        post_id = s.execute(select(Delivery.post_id).where(Delivery.id == delivery_id)).scalar_one_or_none()
    if post_id is None:
        raise NotFound(f"delivery {delivery_id} not found")
    post = get(s, Post, post_id, lock=True)
    d = s.execute(select(Delivery).where(Delivery.id == delivery_id).with_for_update()).scalar_one()
    return post, d


def apply_result(s: Session, d: Delivery, result: PublishResult, post: Post) -> None:
    """Record a platform's answer (published, awaiting confirmation or a person) on a locked delivery."""
    target = result.state if result.state in ("published", "awaiting_confirmation", "awaiting_manual") else "published"
    if d.state == "retry_wait":  # a late answer for a delivery that was given up on meanwhile: the truth wins
        d.state = "sending"
    lifecycle.transition("delivery", d, target)
    d.remote_id = result.remote_id or d.remote_id
    d.remote_url = result.url or d.remote_url
    d.outcome_unknown, d.last_error, d.claimed_by = False, None, None
    if target == "published":
        d.published_at = now()
        wake_dependants(s, d)
        if post.state == "retracted":
            after_commit(s, enqueue, Task.RETRACT_DELIVERY, d.id)
    audit(s, WORKER_ID, f"delivery.{target}", d, remote_id=d.remote_id, url=d.remote_url)


def wake_dependants(s: Session, d: Delivery) -> None:
    """Deliveries that waited for this one (Weibo links to the website copy) are queued now."""
    dependants = s.scalars(select(Delivery).where(Delivery.depends_on_id == d.id, Delivery.state == "pending")).all()
    for dep in dependants:
        dep.next_attempt_at, dep.claimed_by = now(), "queued"
        after_commit(s, enqueue, Task.DELIVER, dep.id)


def settle_post(s: Session, post: Post) -> None:
    """Derive the post's state from its deliveries' states, where the lifecycle allows the move."""
    if post.state not in ("publishing", "published", "partially_published", "failed"):
        return
    states = list(s.scalars(select(Delivery.state).where(Delivery.post_id == post.id)).all())
    target = lifecycle.post_state_from_deliveries(states)
    if target != post.state and lifecycle.can("post", post.state, target):
        lifecycle.transition("post", post, target)
        audit(s, "system", f"post.{target}", post)
