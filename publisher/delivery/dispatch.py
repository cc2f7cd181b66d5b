"""Dispatch: due schedules become one delivery per target account; ready deliveries are handed to workers."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import false, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from channels.base import get_channel_class
from core.audit import appended_at_commit
from core.clock import now
from core.db import is_postgresql, session_scope
from core.errors import NotFound
from core.settings import get_settings
from publisher.delivery.outcomes import LINK_TARGET
from publisher.domain import lifecycle
from publisher.domain.models import Account, Delivery, Post, Schedule
from publisher.services.common import audit, get


@appended_at_commit()
def dispatch_due(limit: int = 1000, *, requeue_stale: bool = True) -> list[int]:
    """Turn due schedules into deliveries and return the ids of deliveries that should run now.

    A delivery already sent to the broker is marked ``queued``; it is returned again only when
    ``requeue_stale`` and the mark is older than ``MATRIX_REQUEUE_AFTER_S`` (its message was probably lost,
    e.g. prefetched by a worker that died). The caller passes ``requeue_stale=False`` while the queue still
    holds messages, so a long backlog is not flooded with duplicate wake-ups.

    Idempotent and safe to run concurrently: schedules are taken with SKIP LOCKED and deliveries are
    unique per (schedule, account).
    """
    t = now()
    with session_scope() as s:
        q = (
            select(Schedule)
            .join(Post, Post.id == Schedule.post_id)
            .where(Schedule.state == "pending", Schedule.due_at <= t, Post.state == "scheduled")
            .order_by(Schedule.due_at)
            .limit(50)
        )
        if is_postgresql(s):
            q = q.with_for_update(skip_locked=True, of=Schedule)
        for schedule in s.scalars(q).all():
            _expand_schedule(s, schedule)
    t = now()  # after the expansion: the deliveries just made are due now, not on the next tick
    with session_scope() as s:
        q = (
            select(Delivery.id)
            .where(
                Delivery.state.in_(lifecycle.DELIVERY_READY),
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= t),
                # A delivery that links to the website copy is not queued while that copy is still on its way:
                # its claim could only put it off. The copy's outcome wakes it (outcomes.wake_dependants), or a
                # later tick finds it here once the copy has settled.
                or_(Delivery.depends_on_id.is_(None), ~_dependency_in_flight),
                or_(
                    Delivery.claimed_by.is_(None),
                    Delivery.claimed_by != "queued",
                    Delivery.updated_at < t - timedelta(seconds=get_settings().requeue_after_s)
                    if requeue_stale
                    else false(),
                ),
            )
            .order_by(Delivery.next_attempt_at)
            .limit(limit)
        )
        ids = list(s.scalars(q).all())
        if ids:
            # Mark as queued so the next tick does not queue them again while they wait in the broker.
            s.execute(update(Delivery).where(Delivery.id.in_(ids)).values(claimed_by="queued", updated_at=t))
    return ids


_dependency = aliased(Delivery)
_dependency_in_flight = (
    select(_dependency.id)
    .where(
        _dependency.id == Delivery.depends_on_id,
        _dependency.state.in_(lifecycle.DELIVERY_READY | {"sending", "unconfirmed", "awaiting_confirmation"}),
    )
    .exists()
)


def _expand_schedule(s: Session, schedule: Schedule) -> None:
    """One delivery per target account of the schedule's post, in one INSERT; the post moves to publishing.

    Set-based: a fan-out to 1,000 accounts read each account on its own and flushed 1,000 ORM objects (~1.5 s
    of CPU before the first delivery could be claimed); now one read of the accounts, one multi-row INSERT that
    returns the ids, and one UPDATE for each group of deliveries that link to the website copy.
    """
    post = get(s, Post, schedule.post_id, lock=True)
    target_ids = [t.account_id for t in post.targets]
    kinds = dict(s.execute(select(Account.id, Account.kind).where(Account.id.in_(target_ids))).all())
    missing = [a for a in target_ids if a not in kinds]
    if missing:
        raise NotFound(f"account {missing[0]} not found")
    t = now()
    rows = [
        {
            "post_id": post.id,
            "version_id": post.current_version_id,
            "account_id": account_id,
            "schedule_id": schedule.id,
            "state": "pending",
            "due_at": schedule.due_at,
            "next_attempt_at": t,
        }
        for account_id in target_ids
    ]
    inserted = s.execute(insert(Delivery).returning(Delivery.id, Delivery.account_id), rows).all()
    made = {account_id: delivery_id for delivery_id, account_id in inserted}
    website = next((made[a] for a in target_ids if kinds[a] == LINK_TARGET), None)
    linking: dict[str, list[int]] = {}
    for a in target_ids:
        if get_channel_class(kinds[a]).needs_website_link:
            linking.setdefault(kinds[a], []).append(made[a])
    for kind, ids in linking.items():
        if website is None:
            # failed at once (the lifecycle's pending -> sending -> failed, as for any delivery that cannot be sent)
            reason = f"{kind} posts link to the website copy: add a website account to the post"
            s.execute(update(Delivery).where(Delivery.id.in_(ids)).values(state="failed", last_error=reason))
        else:
            s.execute(update(Delivery).where(Delivery.id.in_(ids)).values(depends_on_id=website))
    schedule.state, schedule.dispatched_at = "dispatched", t
    lifecycle.transition("post", post, "publishing")
    audit(s, "scheduler", "post.dispatch", post, deliveries=[made[a] for a in target_ids])
