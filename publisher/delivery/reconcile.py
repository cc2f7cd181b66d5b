"""Reconcile: deliveries stuck in sending, unconfirmed or awaiting confirmation are resolved by asking the
platform, never by blind retry; retractions whose wake-up was lost (or whose worker died) are woken again.

Every scan locks what it takes (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite every writing transaction
begins with ``BEGIN IMMEDIATE``, so scans run one at a time) and leaves a mark before it commits (the stuck ones'
new state, the others' ``next_attempt_at`` one interval on, the retractions' ``queued``): two reconciles running
at once never take the same deliveries.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from channels.base import AccountInfo, Channel, DeliveryContext, StatusResult
from channels.errors import ChannelError
from core.audit import appended_at_commit
from core.broker import Task, enqueue
from core.clock import now
from core.db import after_commit, is_postgresql, session_scope
from core.errors import ConfigError
from core.settings import get_settings
from publisher.delivery.context import WORKER_ID, delivery_context, side_by_side
from publisher.delivery.outcomes import (
    apply_result,
    lock_batch,
    lock_post_and_delivery,
    mark_published,
    notify_admins,
    report_leftovers,
    schedule_status_check,
    settle_after_outcome,
    settle_post,
    settled_after_batch,
    settles_later,
)
from publisher.domain import lifecycle
from publisher.domain.models import Account, Delivery, Post, PostVersion
from publisher.services.channels import account_info, make_channel
from publisher.services.common import audit, notify_owner

log = logging.getLogger(__name__)


@appended_at_commit()
def reconcile(limit: int = 200) -> dict[str, int]:
    """Resolve deliveries stuck in sending / unconfirmed / awaiting_confirmation by asking the platform."""
    settings = get_settings()
    t = now()
    counts = {"stuck": 0, "unconfirmed": 0, "awaiting": 0, "posts": 0, "retractions": 0}
    with session_scope() as s:
        q = (
            select(Delivery)
            .where(Delivery.state == "sending", Delivery.claimed_at < t - timedelta(seconds=settings.stuck_after_s))
            .limit(limit)
        )
        stuck = s.scalars(_locked(s, q)).all()
        for d in stuck:  # its worker died or hangs: whether it posted is unknown
            lifecycle.transition("delivery", d, "unconfirmed")
            d.outcome_unknown, d.last_error = True, "worker stopped during the attempt"
            audit(s, "reconcile", "delivery.stuck", d, claimed_by=d.claimed_by)
        counts["stuck"] = len(stuck)
    for state in ("unconfirmed", "awaiting_confirmation"):
        ids = _take(state, limit)
        # Each look is a platform call (hundreds of milliseconds): a few at a time, or a round of 200 settling
        # deliveries would take a minute. Each look runs its own short transactions.
        with ThreadPoolExecutor(max_workers=RECONCILE_THREADS, thread_name_prefix="reconcile") as pool:
            list(pool.map(lambda delivery_id, state=state: _look(state, delivery_id), ids))
        counts["unconfirmed" if state == "unconfirmed" else "awaiting"] = len(ids)
    counts["retractions"] = _wake_retractions(limit)
    with session_scope() as s:
        q = select(Post).where(Post.state.in_(("publishing", "partially_retracted")))
        for post in s.scalars(_locked(s, q)).all():
            before = post.state
            settle_post(s, post)
            counts["posts"] += before != post.state
    return counts


#: platform looks one reconcile round runs at once (each in its own thread, with its own short transactions)
RECONCILE_THREADS = 8


@appended_at_commit()
def check_delivery(delivery_id: int, checks: int = 1) -> str:
    """Look at one delivery on its platform now (the ``check_delivery`` task): a settling one (WeChat's
    ``freepublish``, Toutiao's review) is recorded as it settled, or looked at again later (``checks`` so far);
    an unconfirmed one is looked up. Returns the delivery's state afterwards; any other state is left alone."""
    return check_deliveries([delivery_id], checks)[delivery_id]


@appended_at_commit()
def check_deliveries(delivery_ids: list[int], checks: int = 1) -> dict[int, str]:
    """Look at several deliveries on their platforms now (the ``check_deliveries`` task: the settling copies of
    one batch of a fan-out). The settling ones are read in one transaction, asked side by side and recorded in
    one transaction (posts, then deliveries, locked in the order of ids); an unconfirmed one is looked up on its
    own. Returns each delivery's state afterwards ("missing" where there is none); other states are left alone.

    Why together: a status check alone was a task, two transactions and a commit around one platform call, as
    much CPU as the delivery it checked (profiled: a quarter of a delivery worker's)."""
    states, loaded, alone = _load_settling(delivery_ids)
    statuses = side_by_side(_ask_status, [item for _delivery_id, item in loaded])
    if loaded:
        try:
            states.update(_record_statuses(loaded, statuses, checks))
        except Exception:
            log.warning("recording %d status checks together failed; looking at each alone", len(loaded), exc_info=True)
            alone += [delivery_id for delivery_id, _item in loaded]
    for delivery_id in alone:
        _look(states[delivery_id], delivery_id, checks)
        with session_scope() as s:
            states[delivery_id] = s.get(Delivery, delivery_id).state
    return states


def _load_settling(delivery_ids: list[int]) -> tuple[dict[int, str], list[tuple[int, _Loaded]], list[int]]:
    """Each delivery's state; the settling ones' adapters and contexts (read in one transaction); and those to
    look at on their own (unconfirmed, or credentials this worker cannot decrypt: :func:`_look` reports it)."""
    states = {delivery_id: "missing" for delivery_id in delivery_ids}
    rows: list[tuple[Delivery, PostVersion, AccountInfo, str | None]] = []
    alone: list[int] = []
    with session_scope() as s:
        for d, version, account in s.execute(_FOR_PLATFORM, {"ids": sorted(set(delivery_ids))}).all():
            states[d.id] = d.state
            if d.state == "unconfirmed":
                alone.append(d.id)
                continue
            if d.state != "awaiting_confirmation":
                continue
            try:
                info = account_info(account)
            except ConfigError:
                alone.append(d.id)
                continue
            rows.append((d, version, info, _depends_url(s, d)))
    loaded = [(row[0].id, _adapter_for(*row)) for row in rows]  # after the transaction: see _load_for_platform
    return states, loaded, alone


def _ask_status(loaded: _Loaded) -> StatusResult | ChannelError:
    """How the platform says a settling copy stands, or the platform's error (the look is then noted)."""
    try:
        return loaded.channel.status(loaded.ctx)
    except ChannelError as exc:
        return exc
    finally:
        loaded.channel.close()


def _record_statuses(
    loaded: list[tuple[int, _Loaded]], statuses: list[StatusResult | ChannelError], checks: int | None
) -> dict[int, str]:
    states: dict[int, str] = {}
    with session_scope() as s:
        posts, deliveries = lock_batch(s, [item.post_id for _i, item in loaded], [i for i, _item in loaded])
        settled = {}
        for (delivery_id, item), status in zip(loaded, statuses, strict=True):
            d = deliveries[delivery_id]
            if isinstance(status, ChannelError):  # leave it for the next look (reconcile's round)
                log.warning("reconcile awaiting_confirmation delivery %s: %s", delivery_id, status)
                d.last_error = str(status)
                d.next_attempt_at = now() + timedelta(seconds=get_settings().reconcile_interval_s)
            elif _apply_status(s, posts[item.post_id], d, status, item.kind, checks):
                settled[item.post_id] = posts[item.post_id]
            states[delivery_id] = d.state
        to_settle = settled_after_batch(s, settled.values(), loaded[0][0], len(loaded))
    for post_id in to_settle:
        settle_after_outcome(post_id)
    return states


@appended_at_commit()
def _look(state: str, delivery_id: int, checks: int | None = None) -> None:
    """Resolve one delivery in ``state`` by asking its platform; a failed look is noted and left for later."""
    try:
        if state == "unconfirmed":
            _resolve_unconfirmed(delivery_id)
        else:
            _resolve_awaiting(delivery_id, checks)
    except ChannelError as exc:  # leave it for the next round
        log.warning("reconcile %s delivery %s: %s", state, delivery_id, exc)
        _note(delivery_id, str(exc))
    except ConfigError as exc:  # this worker cannot decrypt the account's credentials: an admin must act
        log.warning("reconcile %s delivery %s: %s", state, delivery_id, exc)
        _note(delivery_id, f"credentials cannot be decrypted by worker {WORKER_ID}: {exc}", admins=True)


def _locked(s, q):
    """``q`` locking the rows it takes; rows another transaction holds are skipped (PostgreSQL). SQLite has no
    row locks: there ``BEGIN IMMEDIATE`` (:func:`core.db.engine_for`) runs writing transactions one at a time."""
    return q.with_for_update(skip_locked=True) if is_postgresql(s) else q


def _take(state: str, limit: int) -> list[int]:
    """The due deliveries in ``state``, taken for this round: their next look is put one interval on in the
    same transaction, so a reconcile running at the same time does not take them too."""
    t = now()
    with session_scope() as s:
        q = (
            select(Delivery)
            .where(Delivery.state == state, or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= t))
            .order_by(Delivery.id)
            .limit(limit)
        )
        taken = s.scalars(_locked(s, q)).all()
        lease = t + timedelta(seconds=get_settings().reconcile_interval_s)
        for d in taken:
            d.next_attempt_at = lease
        return [d.id for d in taken]


def _wake_retractions(limit: int) -> int:
    """Queue the retractions that are due and that nobody is about to run: never woken, wake-up lost (queued
    long ago), or claimed by a worker that stopped."""
    settings = get_settings()
    t = now()
    with session_scope() as s:
        q = (
            select(Delivery)
            .where(
                Delivery.state == "retracting",
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= t),
                or_(
                    Delivery.claimed_by.is_(None),
                    Delivery.updated_at < t - timedelta(seconds=settings.requeue_after_s),
                ),
            )
            .order_by(Delivery.id)
            .limit(limit)
        )
        due = [
            d
            for d in s.scalars(_locked(s, q)).all()
            if d.claimed_by in (None, "queued") or d.updated_at < t - timedelta(seconds=settings.stuck_after_s)
        ]
        for d in due:
            d.claimed_by, d.updated_at = "queued", t
            after_commit(s, enqueue, Task.RETRACT_DELIVERY, d.id)
        return len(due)


def _note(delivery_id: int, message: str, *, admins: bool = False) -> None:
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        if d is not None:
            d.last_error = message
            d.next_attempt_at = now() + timedelta(seconds=get_settings().reconcile_interval_s)
            if admins:
                notify_admins(s, d.account.organization_id, "secret_key", message, post_id=d.post_id)


@dataclass
class _Loaded:
    """What asking the platform about one delivery takes: the adapter, its context, and the delivery's post
    and channel (for recording the answer without reading them again)."""

    channel: Channel
    ctx: DeliveryContext
    post_id: int
    kind: str


# built once with a bound parameter, as the delivery engine's statements (publisher.delivery.outcomes._POST)
_FOR_PLATFORM = (
    select(Delivery, PostVersion, Account)
    .join(PostVersion, PostVersion.id == Delivery.version_id)
    .join(Account, Account.id == Delivery.account_id)
    .where(Delivery.id.in_(bindparam("ids", expanding=True)))
)


def _load_for_platform(delivery_id: int, state: str) -> _Loaded | None:
    """The adapter and its context for asking the platform about a delivery in ``state`` (None if it moved on).

    The rows are read in a short transaction (one statement for the delivery, its version and its account);
    the context is built after it: an uploaded cover is read in a transaction of its own (``post_content``),
    which on SQLite would wait for this one's write lock.
    """
    with session_scope() as s:
        row = s.execute(_FOR_PLATFORM, {"ids": [delivery_id]}).one_or_none()
        if row is None or row[0].state != state:
            return None
        d, version, account = row
        depends_url = _depends_url(s, d)
        info = account_info(account)
    return _adapter_for(d, version, info, depends_url)


def _depends_url(s: Session, d: Delivery) -> str | None:
    """The URL of the website copy ``d`` links to, where it has one."""
    dep = s.get(Delivery, d.depends_on_id) if d.depends_on_id else None
    return dep.remote_url if dep else None


def _adapter_for(d: Delivery, version: PostVersion, info: AccountInfo, depends_url: str | None) -> _Loaded:
    """The adapter and context for a look at ``d``, built after the transaction that read it (see
    :func:`_load_for_platform`)."""
    ctx = delivery_context(d, version, depends_url, kind=info.kind)
    return _Loaded(make_channel(info), ctx, d.post_id, info.kind)


def _resolve_unconfirmed(delivery_id: int) -> None:
    loaded = _load_for_platform(delivery_id, "unconfirmed")
    if loaded is None:
        return
    try:
        found = loaded.channel.lookup(loaded.ctx)
    finally:
        loaded.channel.close()
    with session_scope() as s:
        post, d = lock_post_and_delivery(s, delivery_id, loaded.post_id)
        if d.state != "unconfirmed":
            return
        if found is not None:
            apply_result(s, d, found, post, kind=loaded.kind)
        elif post.state in lifecycle.RETRACTION:  # not there, and its post was retracted: never send it
            lifecycle.transition("delivery", d, "cancelled")
            d.outcome_unknown = False
        else:  # looked, and it is not there: safe to send again (the next attempt looks once more first)
            lifecycle.transition("delivery", d, "retry_wait")
            d.next_attempt_at, d.claimed_by = now(), "queued"
            after_commit(s, enqueue, Task.DELIVER, d.id)
        audit(s, "reconcile", "delivery.reconciled", d, found=found is not None)
        settle_post(s, post)
        report_leftovers(s, post)


def _resolve_awaiting(delivery_id: int, checks: int | None = None) -> None:
    """Ask the platform how an accepted delivery settled. ``checks``: looks a worker took so far (a
    ``check_delivery`` task, which schedules the next one while it is still pending); None: reconcile's round."""
    loaded = _load_for_platform(delivery_id, "awaiting_confirmation")
    if loaded is None:
        return
    try:
        status = loaded.channel.status(loaded.ctx)
    finally:
        loaded.channel.close()
    with session_scope() as s:
        # the post shared (see lock_post_and_delivery): a fan-out's settling copies are recorded side by side
        post, d = lock_post_and_delivery(s, delivery_id, loaded.post_id, shared=True)
        if not _apply_status(s, post, d, status, loaded.kind, checks):
            return
        later = settles_later(s, post, d.id)
    if not later:
        settle_after_outcome(loaded.post_id)


def _apply_status(s: Session, post: Post, d: Delivery, status: StatusResult, kind: str, checks: int | None) -> bool:
    """Record how a settling copy stands (``d`` and its post locked); True where the delivery settled (its post
    may settle now), False where it had moved on or is still settling (another look scheduled)."""
    if d.state != "awaiting_confirmation":
        return False
    if status.state == "published":
        # the one way to published: a post retracted meanwhile has its copy retracted at once
        mark_published(s, d, post, status.url, actor="reconcile", kind=kind)
    elif status.state == "failed":
        lifecycle.transition("delivery", d, "failed")
        d.last_error = status.reason or "the platform refused the post"
        notify_owner(s, post, "delivery_failed", f"post {post.id} on {d.account.name}: {d.last_error}")
    elif status.state == "retracted":
        lifecycle.transition("delivery", d, "retracted")
        d.last_error = status.reason or "removed on the platform"
        notify_owner(s, post, "removed_by_platform", f"post {post.id} on {d.account.name}: {d.last_error}")
    else:  # still settling
        if checks is not None:
            schedule_status_check(s, d, checks)
        return False
    if status.state != "published":
        audit(s, "reconcile", f"delivery.{d.state}", d, reason=status.reason, url=status.url)
    return True
