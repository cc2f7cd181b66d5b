"""Retraction is a delivery too: each copy goes ``published → retracting → retracted | retract_failed``.

* :func:`retract_post` marks the post ``partially_retracted``, cancels what never went out, moves every live
  (or still settling) copy to ``retracting`` and makes a first attempt of each at once, so the caller's report
  says what happened. Run again, it retries what is left (``retract_failed``; a ``retracting`` copy at once).
* :func:`retract_delivery` is one attempt (also the Celery task ``matrix.retract_delivery``): the delivery is
  claimed in a short transaction, the platform is called outside any, the outcome is recorded in another.
  Transient errors (and lost answers: deleting is idempotent, gone already is success) are retried with
  backoff, a wake-up with a countdown as the early call; reconcile finds any retraction whose wake-up was lost
  or whose worker died. Permanent errors, or ``MATRIX_RETRACT_MAX_ATTEMPTS`` transient ones, end in
  ``retract_failed`` with the reason.
* A copy that goes live after its post was retracted (a WeChat article settling, a lost answer found) is moved
  to ``retracting`` by :func:`publisher.delivery.outcomes.mark_published`, every path's way to ``published``.
* The post becomes ``retracted`` once no copy may be live anywhere; while copies are left and nothing is in
  progress, its owner is told which (:func:`publisher.delivery.outcomes.report_leftovers`).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from channels.base import DeliveryContext, get_channel_class
from channels.errors import ChannelError, InvalidRequest, NeedsReauth, OutcomeUnknown, TransientError, Unavailable
from core.audit import appended_at_commit
from core.broker import Task, enqueue
from core.clock import format_local, now
from core.db import after_commit, is_postgresql, session_scope
from core.errors import ConfigError, Conflict
from core.settings import get_settings
from publisher.delivery.context import WORKER_ID, delivery_context
from publisher.delivery.outcomes import (
    backoff,
    begin_retraction,
    load_post,
    lock_post_and_delivery,
    notify_admins,
    report_leftovers,
    settle_post,
)
from publisher.domain import lifecycle
from publisher.domain.models import Account, Delivery, Post, PostVersion
from publisher.services.channels import account_info, make_channel
from publisher.services.common import audit, get
from publisher.services.people import SYSTEM, Principal, require

log = logging.getLogger(__name__)

Line = dict[str, Any]

_NEVER_SENT = ("pending", "retry_wait", "needs_reauth", "failed")
_FIRST_ATTEMPT = f"retract {WORKER_ID}"  # the mark of a first attempt this process is about to make


def retract_post(actor: Principal, post_id: int) -> list[Line]:
    """Retract a post everywhere, or what is left of it. Returns one line per delivery: ``delivery``,
    ``account``, ``kind``, ``outcome`` (retracted | retracting | retract_failed | cancelled | manual |
    in_flight | already) and ``detail``."""
    with session_scope() as s:
        post = get(s, Post, post_id, lock=True)
        require(s, actor, "post.retract", post.organization_id)
        if post.state == "retracted":
            raise Conflict(f"post {post.id} is retracted: no copy of it is left")
        if post.state not in lifecycle.RETRACTABLE:
            raise Conflict(f"post {post.id} is {post.state}; only a post that went out can be retracted")
        again = post.state == "partially_retracted"
        if not again:
            lifecycle.transition("post", post, "partially_retracted")
        audit(s, actor, "post.retract_again" if again else "post.retract", post)
        # Locked after the post, as every recorder does (lock_post_and_delivery): no delivery moves meanwhile.
        deliveries = s.scalars(
            select(Delivery).where(Delivery.post_id == post.id).order_by(Delivery.id).with_for_update()
        ).all()
        lines = [_plan(s, d, post, actor) for d in deliveries]
        settle_post(s, post)  # nothing went out anywhere: retracted at once
        if not any(line["outcome"] == "retracting" for line in lines):
            report_leftovers(s, post)
    # The first attempts, outside the transaction: each claims its delivery and records its own outcome.
    return [_attempt(line["delivery"], actor, wait=True) if line["outcome"] == "retracting" else line for line in lines]


def _line(d: Delivery) -> Line:
    return {"delivery": d.id, "account": d.account.name, "kind": d.account.kind}


def _plan(s: Any, d: Delivery, post: Post, actor: Principal) -> Line:
    """What a retraction does with one (locked) delivery; ``retracting`` ones are attempted next."""
    line = _line(d)
    if d.state in _NEVER_SENT or d.state == "awaiting_manual":
        previous = lifecycle.transition("delivery", d, "cancelled")
        audit(s, actor, "delivery.cancelled", d)
        detail = "not posted"
        if previous == "awaiting_manual":
            detail += " (if somebody posted it by hand meanwhile, delete it there too)"
        return {**line, "outcome": "cancelled", "detail": detail}
    if d.state in ("retracted", "cancelled"):
        return {**line, "outcome": "already", "detail": d.state}
    if d.state in ("sending", "unconfirmed"):
        return {**line, "outcome": "in_flight", "detail": "retracted as soon as its outcome is known"}
    if d.state == "retracting":
        if d.claimed_by not in (None, "queued"):
            return {**line, "outcome": "retracting", "detail": f"being retracted by {d.claimed_by}"}
        d.next_attempt_at = now()  # run again: try it now rather than at its backoff
        _mark_ours(d)
        return {**line, "outcome": "retracting", "detail": ""}
    # published, awaiting_confirmation, retract_failed
    if begin_retraction(s, d, post, wake=False):
        _mark_ours(d)
        return {**line, "outcome": "retracting", "detail": ""}
    name = get_channel_class(d.account.kind).display_name or d.account.kind
    return {
        **line,
        "outcome": "manual",
        "detail": f"{name} has no retraction API: delete {d.remote_url or 'it'} by hand, "
        f"then `matrix delivery removed {d.id}`",
    }


def _mark_ours(d: Delivery) -> None:
    # This process makes the first attempt right after commit: reconcile must not wake a worker for it meanwhile
    # (it would take it first); if this process dies before, the mark goes stale and reconcile takes it over.
    d.claimed_by, d.updated_at = _FIRST_ATTEMPT, now()


@appended_at_commit()
def retract_delivery(delivery_id: int, actor: Principal = SYSTEM) -> Line:
    """One attempt to retract a ``retracting`` delivery; a no-op line for any other state, for a delivery
    another worker is retracting right now, or for one whose next attempt is not due yet."""
    return _attempt(delivery_id, actor, wait=False)


def _attempt(delivery_id: int, actor: Principal, *, wait: bool) -> Line:
    claimed = _claim(delivery_id, wait=wait)
    if not isinstance(claimed, tuple):
        return claimed
    line, info, ctx = claimed
    error: ChannelError | None = None
    try:
        channel = make_channel(info)
    except Exception as exc:  # the token cache or limiter cannot be set up: nothing was sent
        log.warning("retraction of delivery %s: %s", delivery_id, exc.__class__.__name__)
        return _record(delivery_id, line, Unavailable(f"not sent: {exc.__class__.__name__}"), actor)
    try:
        if channel.supports_retract:
            channel.retract(ctx)
        else:  # the account was switched to assisted mode after the retraction began
            error = InvalidRequest(
                f"no retraction API: delete it by hand, then `matrix delivery removed {delivery_id}`"
            )
    except ChannelError as exc:
        error = exc
    except Exception as exc:  # a bug or our own store failing: deleting is idempotent, so it is simply tried again
        log.exception("retraction of delivery %s: unexpected error", delivery_id)
        error = Unavailable(f"unexpected error: {exc.__class__.__name__}")
    finally:
        channel.close()
    return _record(delivery_id, line, error, actor)


def _claim(delivery_id: int, *, wait: bool) -> Line | tuple[Line, Any, DeliveryContext]:
    """Take a due ``retracting`` delivery for this process. ``wait``: block on a row another transaction holds
    (the first attempt, for a person waiting on the report) instead of skipping it (workers)."""
    t = now()
    settings = get_settings()
    with session_scope() as s:
        q = select(Delivery).where(Delivery.id == delivery_id)
        q = q.with_for_update(skip_locked=not wait) if is_postgresql(s) else q
        d = s.execute(q).scalar_one_or_none()
        if d is None:  # another transaction holds it (an attempt being recorded), or there is no such delivery
            return {"delivery": delivery_id, "account": "", "kind": "", "outcome": "busy", "detail": "try again"}
        line = _line(d)
        if d.state != "retracting":
            return {**line, "outcome": d.state, "detail": ""}
        ours = wait and d.claimed_by == _FIRST_ATTEMPT
        busy = d.claimed_by not in (None, "queued") and d.updated_at > t - timedelta(seconds=settings.stuck_after_s)
        if busy and not ours:
            return {**line, "outcome": "retracting", "detail": f"being retracted by {d.claimed_by}"}
        if d.next_attempt_at and d.next_attempt_at > t:
            return {**line, "outcome": "retracting", "detail": f"next attempt {format_local(d.next_attempt_at)}"}
        try:
            info = account_info(d.account)
        except ConfigError as exc:
            post = load_post(s, d.post_id)
            _give_up(s, d, f"credentials cannot be decrypted by worker {WORKER_ID}: {exc}", "ConfigError")
            notify_admins(
                s,
                d.account.organization_id,
                "secret_key",
                f"worker {WORKER_ID} cannot decrypt the credentials of account {d.account.name}: {exc} "
                f"Retractions on it fail until the key is fixed; then `matrix post retract {d.post_id}` again.",
                post_id=d.post_id,
            )
            settle_post(s, post)
            report_leftovers(s, post)
            return {**line, "outcome": "retract_failed", "detail": d.last_error}
        # The claim: whose it is, and since when (updated_at; claimed_at stays the publishing claim's time,
        # which the per-hour posting limits count).
        d.claimed_by, d.updated_at = WORKER_ID, t
        version = s.get(PostVersion, d.version_id)
        # the platform's own title where the editor wrote one: a lookup by title must match what was posted
        ctx = delivery_context(d, version, with_cover=False, kind=d.account.kind)
        return line, info, ctx


def _give_up(s: Any, d: Delivery, reason: str, error: str) -> None:
    lifecycle.transition("delivery", d, "retract_failed")
    d.last_error, d.claimed_by = f"retraction failed: {reason}", None
    audit(s, WORKER_ID, "delivery.retract_failed", d, error=error, message=reason)


def _record(delivery_id: int, line: Line, error: ChannelError | None, actor: Principal) -> Line:
    """Store one attempt's outcome and move the post on; a retry's wake-up goes out after commit."""
    settings = get_settings()
    with session_scope() as s:
        post, d = lock_post_and_delivery(s, delivery_id)
        if d.state != "retracting":  # recorded meanwhile (removed by hand): that stands
            return {**line, "outcome": d.state, "detail": ""}
        attempts = int((d.progress or {}).get("retract_attempts", 0)) + 1
        d.progress = {**(d.progress or {}), "retract_attempts": attempts}
        d.claimed_by = None
        retryable = isinstance(error, (TransientError, OutcomeUnknown))
        if error is None:
            lifecycle.transition("delivery", d, "retracted")
            d.last_error = None
            audit(s, actor, "delivery.retracted", d, attempts=attempts)
            outcome, detail = "retracted", ""
        elif retryable and attempts < settings.retract_max_attempts:
            delay = backoff(attempts, getattr(error, "retry_after", None))
            d.next_attempt_at = now() + timedelta(seconds=delay)
            d.last_error = f"retraction attempt {attempts} failed: {error}; retrying"
            if delay < settings.requeue_after_s:  # longer waits: reconcile wakes it when it is due
                d.claimed_by = "queued"
                after_commit(s, enqueue, Task.RETRACT_DELIVERY, d.id, countdown=delay)
            audit(s, actor, "delivery.retract_error", d, error=type(error).__name__, message=str(error))
            outcome, detail = "retracting", f"{error}; retrying in {delay:.0f} s"
        else:
            assert error is not None  # noqa: S101 - for the type checker only
            reason = f"gave up after {attempts} attempts: {error}" if retryable else str(error)
            _give_up(s, d, reason, type(error).__name__)
            if isinstance(error, NeedsReauth):
                account = s.get(Account, d.account_id)
                account.status, account.status_reason = "needs_reauth", str(error)
                audit(s, WORKER_ID, "account.needs_reauth", account, reason=str(error), post=post.id)
            outcome, detail = "retract_failed", reason
        settle_post(s, post)
        report_leftovers(s, post)
    return {**line, "outcome": outcome, "detail": detail}
