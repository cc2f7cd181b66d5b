"""Recording outcomes: the lock order, applying a platform's answer (every path to ``published`` goes through
:func:`mark_published`), starting retractions, waking dependants, backoff, settling the post, telling people."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, event, func, select
from sqlalchemy.orm import Session, lazyload

from channels.base import PublishResult, get_channel_class
from core.broker import Task, enqueue
from core.clock import now
from core.db import after_commit, id_in_range, session_scope
from core.errors import NotFound
from core.notify import Notification, notify
from core.settings import get_settings
from publisher.delivery.context import WORKER_ID
from publisher.domain import lifecycle
from publisher.domain.models import Delivery, Post
from publisher.services.common import audit, holders, notify_owner

log = logging.getLogger(__name__)


def lock_post_and_delivery(
    s: Session, delivery_id: int, post_id: int | None = None, *, shared: bool = False
) -> tuple[Post, Delivery]:
    """Lock the delivery's post, then the delivery: always in this order, so recording outcomes of one
    post's deliveries is serialised (the post state derived from them never misses a concurrent change).
    ``post_id``: the delivery's post where the caller knows it (a delivery never changes post).

    ``shared``: the post in share mode (PostgreSQL ``FOR SHARE``): outcomes of one post's deliveries are then
    recorded side by side, while a retraction (which locks the post exclusively, then its deliveries) waits
    for them or they for it, so the post's state read here holds until commit. Such a transaction must not
    change the post: it settles it afterwards (:func:`settle_after_outcome`). Exclusive, a fan-out to 1,000
    accounts recorded its outcomes one at a time, each waiting for the last to commit."""
    if post_id is None and id_in_range(delivery_id):  # out of range the database would fail rather than find nothing
        post_id = s.execute(_POST_OF_DELIVERY, {"delivery_id": delivery_id}).scalar_one_or_none()
    if post_id is None:
        raise NotFound(f"delivery {delivery_id} not found")
    post = load_post(s, post_id, lock=True, shared=shared)
    d = s.execute(_DELIVERY_LOCKED, {"delivery_id": delivery_id}).scalar_one()
    return post, d


def lock_batch(
    s: Session, post_ids: Iterable[int], delivery_ids: Iterable[int]
) -> tuple[dict[int, Post], dict[int, Delivery]]:
    """:func:`lock_post_and_delivery` for a batch (``shared``): its posts in share mode, then its deliveries,
    each in the order of ids, so batches and single outcomes that share rows cannot deadlock. Returns the posts
    and the deliveries by id (a delivery that is gone is missing)."""
    posts = {post_id: load_post(s, post_id, lock=True, shared=True) for post_id in sorted(set(post_ids))}
    deliveries = {d.id: d for d in s.scalars(_DELIVERIES_LOCKED, {"ids": sorted(set(delivery_ids))})}
    return posts, deliveries


def settled_after_batch(s: Session, posts: Iterable[Post], delivery_id: int, size: int) -> list[int]:
    """The posts of a batch's outcomes (``size`` of them, ``delivery_id`` one) to settle after its commit
    (:func:`settle_after_outcome`); the others leave it to later outcomes (:func:`settles_later`, its window
    widened by the batch: a batch's outcomes commit together, so as many more may commit between one batch's
    count and its commit)."""
    window = SETTLE_WINDOW * max(1, size)
    return [post.id for post in posts if not settles_later(s, post, delivery_id, window=window)]


# The engine's statements of every delivery, built once with bound parameters: building a statement and its
# cache key anew each time cost more CPU than running it (0.24 vs 0.10 ms for the claim's select, measured).
_POST_OF_DELIVERY = select(Delivery.post_id).where(Delivery.id == bindparam("delivery_id"))
_DELIVERY_LOCKED = select(Delivery).where(Delivery.id == bindparam("delivery_id")).with_for_update()
_DELIVERIES_LOCKED = (
    select(Delivery).where(Delivery.id.in_(bindparam("ids", expanding=True))).order_by(Delivery.id).with_for_update()
)
_POST = select(Post).where(Post.id == bindparam("post_id")).options(lazyload(Post.targets))
#: the post by (lock, shared): unlocked, locked in share mode, locked
_POST_LOCKS = {
    (False, False): _POST,
    (False, True): _POST,
    (True, True): _POST.with_for_update(read=True),
    (True, False): _POST.with_for_update(),
}


def load_post(s: Session, post_id: int, *, lock: bool = False, shared: bool = False) -> Post:
    """The post of a delivery, without its targets: a post loads every target account eagerly (its pages list
    them), and the engine loads the post several times per delivery, so a fan-out to 1,000 accounts loaded a
    million rows. Its targets still load on first use. ``lock``: the row locked (``shared``: in share mode)."""
    post = s.execute(_POST_LOCKS[lock, shared], {"post_id": post_id}).scalar_one_or_none()
    if post is None:
        raise NotFound(f"post {post_id} not found")
    return post


def apply_result(s: Session, d: Delivery, result: PublishResult, post: Post, *, kind: str | None = None) -> None:
    """Record a platform's answer (published, awaiting confirmation or a person) on a locked delivery;
    ``kind``: the account's channel where the caller knows it (see :func:`mark_published`)."""
    target = result.state if result.state in ("published", "awaiting_confirmation", "awaiting_manual") else "published"
    if d.state == "retry_wait":  # a late answer for a delivery that was given up on meanwhile: the truth wins
        d.state = "sending"
    d.remote_id = result.remote_id or d.remote_id
    d.outcome_unknown, d.last_error, d.claimed_by = False, None, None
    if target == "published":
        mark_published(s, d, post, result.url, kind=kind)
        return
    lifecycle.transition("delivery", d, target)
    d.remote_url = result.url or d.remote_url
    audit(s, WORKER_ID, f"delivery.{target}", d, remote_id=d.remote_id, url=d.remote_url)
    if target == "awaiting_confirmation" and post.state in lifecycle.RETRACTION:
        # accepted by an asynchronous platform after the post was retracted: take it down as it settles
        begin_retraction(s, d, post)
    elif target == "awaiting_confirmation":
        schedule_status_check(s, d, 0)


#: the channel whose copies other deliveries link to (``needs_website_link``; see ``dispatch``)
LINK_TARGET = "website"

#: looks a worker takes at a settling delivery before leaving it to reconcile's round (2+4+...+30 s: minutes)
STATUS_CHECKS = 8


def schedule_status_check(s: Session, d: Delivery, done: int) -> None:
    """Look at a delivery that an asynchronous platform accepted (WeChat, Toutiao) again soon, after ``done``
    looks: ``MATRIX_STATUS_POLL_S`` doubled each time up to the reconcile interval, by a ``check_delivery`` task
    after commit. It settles seconds after the platform does, not at reconcile's next round; the delivery's
    ``next_attempt_at`` keeps reconcile off it until then, and reconcile looks at it if the wake-up is lost:
    when the check is ``MATRIX_REQUEUE_AFTER_S`` late, as for a queued delivery. (Without that grace, a check
    waiting behind a fan-out's backlog was looked at by reconcile too: two status calls, ~8 % of a delivery
    worker's time in bench/fanout.py.)"""
    settings = get_settings()
    if done >= STATUS_CHECKS:
        return
    delay = min(settings.status_poll_s * 2**done, settings.reconcile_interval_s)
    d.next_attempt_at = now() + timedelta(seconds=delay + settings.requeue_after_s)
    # The transaction's checks go out together after commit: those due at the same moment in batches (a batch
    # of a fan-out's outcomes makes several), one task each (see reconcile.check_deliveries).
    pending = s.info.get(_STATUS_CHECKS)
    if pending is None:
        pending = s.info[_STATUS_CHECKS] = {}
        after_commit(s, _enqueue_status_checks, pending)
    pending.setdefault((done + 1, delay), []).append(d.id)


_STATUS_CHECKS = "matrix_status_checks"


@event.listens_for(Session, "after_rollback")
def _drop_status_checks(session: Session) -> None:
    session.info.pop(_STATUS_CHECKS, None)  # their wake-up went with the rollback (core.db.after_commit)


@event.listens_for(Session, "after_commit")
def _forget_status_checks(session: Session) -> None:
    session.info.pop(_STATUS_CHECKS, None)  # sent by the after-commit hook; a next transaction starts anew


def _enqueue_status_checks(pending: dict[tuple[int, float], list[int]]) -> None:
    for (checks, delay), ids in pending.items():
        enqueue_in_batches(Task.CHECK_DELIVERY, Task.CHECK_DELIVERIES, ids, checks, countdown=delay)


def enqueue_in_batches(one: Task, many: Task, ids: Sequence[int], *args: Any, countdown: float | None = None) -> None:
    """Wake the work on ``ids`` in batches of ``MATRIX_DELIVERY_BATCH``: a ``many`` task per batch (its ids
    first, then ``args``), the ``one`` task for a batch of one. How a fan-out, its dependants and its status
    checks are sent."""
    size = get_settings().delivery_batch
    for i in range(0, len(ids), size):
        batch = list(ids[i : i + size])
        if len(batch) == 1:
            enqueue(one, batch[0], *args, countdown=countdown)
        else:
            enqueue(many, batch, *args, countdown=countdown)


def mark_published(
    s: Session,
    d: Delivery,
    post: Post,
    url: str | None = None,
    *,
    actor: str = WORKER_ID,
    kind: str | None = None,
) -> None:
    """Every path's way to ``published`` (a worker's answer, reconcile's lookup or status poll, a person's
    confirmation): dependants are woken, and a copy that went live after its post was retracted is retracted
    at once (``retracting``, a retraction task queued). ``kind``: the account's channel, where the caller knows
    it: only a website copy has dependants (posts that link to it), so the others skip looking for them."""
    lifecycle.transition("delivery", d, "published")
    d.remote_url = url or d.remote_url
    d.published_at = now()
    audit(s, actor, "delivery.published", d, remote_id=d.remote_id, url=d.remote_url)
    if post.state in lifecycle.RETRACTION:
        begin_retraction(s, d, post)
    elif kind is None or kind == LINK_TARGET:
        wake_dependants(s, d)


def can_retract(d: Delivery) -> bool:
    """Whether the delivery's account is retracted through its platform's API (False: deleted by hand)."""
    return get_channel_class(d.account.kind).can_retract(d.account.config or {})


def begin_retraction(s: Session, d: Delivery, post: Post, *, wake: bool = True) -> bool:
    """Move a delivery with a live (or settling) copy to ``retracting`` and, with ``wake``, queue its retraction
    after commit (reconcile finds it anyway). False, with nothing changed, for an account without a retraction
    API: its copy stays ``published`` until a person deletes it and records it (``matrix delivery removed``)."""
    if not can_retract(d):
        return False
    lifecycle.transition("delivery", d, "retracting")
    d.progress = {**(d.progress or {}), "retract_attempts": 0}
    d.next_attempt_at, d.last_error = now(), None
    d.claimed_by = "queued" if wake else None
    if wake:
        after_commit(s, enqueue, Task.RETRACT_DELIVERY, d.id)
    audit(s, WORKER_ID, "delivery.retracting", d, post_state=post.state)
    return True


def backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds before the next attempt: exponential from ``MATRIX_RETRY_BASE_S`` up to ``MATRIX_RETRY_MAX_S``,
    with jitter, and at least the platform's ``Retry-After``."""
    settings = get_settings()
    delay = min(settings.retry_max_s, settings.retry_base_s * 2 ** max(0, attempt - 1))
    # jitter: workers that failed together don't retry together (a spread, not a secret: S311 does not apply)
    delay = delay * (0.5 + random.random() / 2)  # noqa: S311
    return max(delay, retry_after or 0.0)


def notify_admins(s: Session, org_id: int, kind: str, message: str, *, post_id: int | None = None) -> None:
    """Tell the admins of ``org_id`` (or above it; nobody there: whoever administers the installation) about a
    fault of the installation, once: the same unread message is not repeated for every delivery it stops."""
    recipients = holders(s, ["admin"], org_id) or [None]
    unread = s.scalars(
        select(Notification.user_id).where(
            Notification.kind == kind, Notification.message == message, Notification.read_at.is_(None)
        )
    ).all()
    fresh = [r for r in recipients if r not in set(unread)]
    if fresh:
        notify(s, fresh, kind, message, post_id=post_id)


def wake_dependants(s: Session, d: Delivery) -> None:
    """Deliveries that waited for this one (Weibo links to the website copy) are queued now."""
    # a dependant belongs to the same post: the post's index finds it (depends_on_id has none of its own)
    dependants = s.scalars(
        select(Delivery).where(
            Delivery.post_id == d.post_id, Delivery.depends_on_id == d.id, Delivery.state == "pending"
        )
    ).all()
    for dep in dependants:
        dep.next_attempt_at, dep.claimed_by = now(), "queued"
    if dependants:  # in batches, as dispatch sends a fan-out (250 Weibo copies wait for one website copy)
        after_commit(s, enqueue_in_batches, Task.DELIVER, Task.DELIVER_MANY, [dep.id for dep in dependants])


_DELIVERY_STATES = select(Delivery.state).where(Delivery.post_id == bindparam("post_id")).distinct()


def settle_post(s: Session, post: Post) -> None:
    """Derive the post's state from its deliveries' states, where the lifecycle allows the move.

    A post being retracted becomes ``retracted`` once no copy may be live anywhere; until then it stays
    ``partially_retracted`` (:func:`report_leftovers` tells its owner what is left).
    """
    if post.state not in ("publishing", "published", "partially_published", "failed", "partially_retracted"):
        return
    # The distinct states decide it, not the rows: a post to 1,000 accounts is settled after each of its 1,000
    # deliveries, and loading every row each time made a fan-out quadratic.
    states = sorted(s.scalars(_DELIVERY_STATES, {"post_id": post.id}).all())
    if post.state == "partially_retracted":
        target = lifecycle.retraction_state(states)
    else:
        target = lifecycle.post_state_from_deliveries(states)
    if target != post.state and lifecycle.can("post", post.state, target):
        lifecycle.transition("post", post, target)
        audit(s, "system", f"post.{target}", post)


#: While more than this many other deliveries of a publishing post are unsettled, an outcome leaves settling the
#: post to the outcomes after it (:func:`settles_later`).
SETTLE_WINDOW = 32


def settles_later(s: Session, post: Post, delivery_id: int, *, window: int = SETTLE_WINDOW) -> bool:
    """Whether the outcome being recorded (under the post's lock) can leave the post's settling to later ones:
    the post is publishing and more than ``window`` (:data:`SETTLE_WINDOW`) of its other deliveries have not
    settled.

    Why: :func:`settle_after_outcome` is a transaction of its own after each outcome, and in a fan-out to 1,000
    accounts all but the last few find deliveries still unsettled and do nothing. One capped count in the
    outcome's own transaction saves that. The last outcomes of a fan-out find at most the window unsettled and
    settle as before; in the rare case where more than the window's worth of outcomes were recorded between a
    transaction's count and its commit, reconcile's round settles the post (as it settles any post left over).
    """
    if post.state != "publishing":
        return False
    params = {"post_id": post.id, "delivery_id": delivery_id, "cap": window + 1}
    return s.execute(_UNSETTLED_OTHERS, params).scalar_one() > window


_UNSETTLED_OTHERS = select(func.count()).select_from(
    select(Delivery.id)
    .where(
        Delivery.post_id == bindparam("post_id"),
        Delivery.id != bindparam("delivery_id"),
        Delivery.state.notin_(lifecycle.DELIVERY_SETTLED),
    )
    .limit(bindparam("cap"))
    .subquery()
)
_POST_STATE_AND_UNSETTLED = select(
    Post.state,
    select(Delivery.id)
    .where(Delivery.post_id == bindparam("post_id"), Delivery.state.notin_(lifecycle.DELIVERY_SETTLED))
    .exists(),
).where(Post.id == bindparam("post_id"))


def settle_after_outcome(post_id: int) -> None:
    """Settle a post after an outcome of one of its deliveries was committed under a shared post lock, in a
    short transaction of its own; then tell its owner what a retraction left (:func:`report_leftovers`).

    While a publishing post still has a delivery that has not settled, no outcome can change its state, so
    nothing is locked: that delivery's own outcome settles it later. This check runs after its outcome
    committed, so of the post's last two outcomes, committed at the same time, the later one sees both (READ
    COMMITTED: each statement sees what was committed before it). Reconcile settles any post left over, so a
    failure here is logged, never raised: the outcome before it is committed and must not look failed.
    """
    try:
        with session_scope() as s:
            row = s.execute(_POST_STATE_AND_UNSETTLED, {"post_id": post_id}).one_or_none()
            if row is None or (row[0] == "publishing" and row[1]):
                return
            post = load_post(s, post_id, lock=True)
            settle_post(s, post)
            report_leftovers(s, post)
    except Exception:
        log.exception("post %s: not settled now; reconcile settles it", post_id)


def report_leftovers(s: Session, post: Post) -> list[Delivery]:
    """Tell the owner of a partially retracted post which copies are left, once nothing is in progress any
    more (no retraction running, nothing in flight); returns those copies (none: nothing to tell)."""
    if post.state != "partially_retracted":
        return []
    deliveries = list(s.scalars(select(Delivery).where(Delivery.post_id == post.id).order_by(Delivery.id)).all())
    if any(d.state in ("retracting", "sending", "unconfirmed", "awaiting_confirmation") for d in deliveries):
        return []
    left = [d for d in deliveries if d.state in ("published", "retract_failed")]
    if left:
        parts = [
            f"{d.account.name} (delivery {d.id}): "
            + (
                (d.last_error or "retraction failed")
                if d.state == "retract_failed"
                else f"no retraction API: delete {d.remote_url or 'it'} by hand, then `matrix delivery removed {d.id}`"
            )
            for d in left
        ]
        again = (
            f" Run `matrix post retract {post.id}` again to retry."
            if any(d.state == "retract_failed" for d in left)
            else ""
        )
        notify_owner(
            s,
            post,
            "retraction_incomplete",
            f"post {post.id}: {len(left)} copies are still up: " + "; ".join(parts) + again,
        )
    return left
