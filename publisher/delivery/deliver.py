"""The delivery engine: due schedules become deliveries; each delivery is claimed, sent, and recorded.

Rules that make "never post twice, never lose a post" hold:

* The database is the truth. Broker messages only wake workers up; ``dispatch_due`` (beat) finds every due
  delivery again, so a lost message delays a post but never loses it.
* A delivery is *claimed* before any platform call: one transaction that locks the row (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) and moves it to ``sending``. Two workers holding the
  same message cannot both claim it.
* Every remote id is saved in its own transaction the moment the platform returns it (``save_progress``).
* Any attempt after the first starts with a *lookup* by our idempotency key: if the earlier attempt did post
  (answer lost, worker killed), we find it and record it instead of posting again.
* A call whose answer was lost leaves the delivery ``unconfirmed``; a worker that died leaves it ``sending``.
  ``reconcile`` (beat) resolves both by looking on the platform, never by blind retry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from channels.base import AccountInfo, PublishResult, get_channel_class
from channels.errors import (
    ChannelError,
    NeedsReauth,
    NotSent,
    OutcomeUnknown,
    PermanentError,
    QuotaExhausted,
    RateLimited,
    Throttled,
    TransientError,
)
from core import logs
from core.audit import appended_at_commit
from core.broker import Task, enqueue
from core.clock import format_local, now
from core.db import UTCDateTime, after_commit, is_postgresql, session_scope
from core.errors import ConfigError, NotFound
from core.metrics import DELIVERY_ATTEMPTS
from core.settings import get_settings
from publisher.delivery.context import WORKER_ID, ClaimLost, delivery_context, side_by_side
from publisher.delivery.outcomes import (
    apply_result,
    backoff,
    load_post,
    lock_batch,
    lock_post_and_delivery,
    notify_admins,
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


#: how many more attempts a delivery that platforms keep asking to slow down gets (see _record_in)
RATE_LIMITED_FACTOR = 4


@dataclass
class Claim:
    """A delivery this worker has claimed: the account as the adapter sees it, and whether to look before posting."""

    delivery_id: int
    post_id: int
    info: AccountInfo
    ctx_args: tuple[Delivery, PostVersion, str | None]
    needs_lookup: bool
    #: when the attempt was claimed and its number: audited with its outcome (see :func:`_record`)
    attempt_at: datetime
    attempt: int


# The claim's statements, built once with bound parameters (building them per delivery cost more CPU than running
# them: see outcomes._POST). One statement for the delivery (locked), the version it sends and its post's state:
# the post row itself is loaded only where the claim settles it.
_CLAIM = (
    select(Delivery, PostVersion, Post.state, Post.current_version_id)
    .join(Post, Post.id == Delivery.post_id)
    .join(PostVersion, PostVersion.id == Delivery.version_id)
    .where(Delivery.id.in_(bindparam("ids", expanding=True)))
    .order_by(Delivery.account_id, Delivery.id)
)
_CLAIM_PG = _CLAIM.with_for_update(skip_locked=True, of=Delivery)
# Accounts locked in the order of their ids, by every transaction that locks more than one (a batch's claim, a
# batch's outcomes): two batches that share accounts (two posts fanning out at once) then cannot deadlock.
_ACCOUNTS_LOCKED = (
    select(Account).where(Account.id.in_(bindparam("ids", expanding=True))).order_by(Account.id).with_for_update()
)
#: when the account's other deliveries of the last hour were claimed (an hourly posting limit)
_CLAIMED_SINCE = (
    select(Delivery.claimed_at)
    .where(
        Delivery.account_id == bindparam("account_id"),
        Delivery.id != bindparam("delivery_id"),
        Delivery.claimed_at >= bindparam("since", type_=UTCDateTime()),
        Delivery.state.notin_(("pending", "retry_wait", "cancelled", "failed")),
    )
    .order_by(Delivery.claimed_at)
)


def _claim(delivery_id: int) -> Claim | None:
    """Atomically take a delivery for this worker, or return None (someone else has it / not due / blocked)."""
    claims = _claim_many([delivery_id])
    return claims[0] if claims else None


def _claim_many(delivery_ids: list[int]) -> list[Claim]:
    """Atomically take those of ``delivery_ids`` that are ready for this worker, in one transaction: one locked
    read of the deliveries (rows another worker holds are skipped), one of their accounts, one commit and one
    turn at the audit chain for the whole batch. What each delivery's checks decide (cancelled, waiting, failed
    unsent) is decided as for a delivery claimed alone."""
    t = now()
    with session_scope() as s:
        q = _CLAIM_PG if is_postgresql(s) else _CLAIM
        rows = s.execute(q, {"ids": sorted(set(delivery_ids))}).all()
        ready = [row for row in rows if row[0].state in lifecycle.DELIVERY_READY]
        accounts: dict[int, Account] = {}
        if ready:
            wanted = sorted({row[0].account_id for row in ready})
            accounts = {a.id: a for a in s.scalars(_ACCOUNTS_LOCKED, {"ids": wanted})}
        claims = []
        for d, version, post_state, current_version_id in ready:
            claim = _claim_one(s, t, d, version, post_state, current_version_id, accounts[d.account_id])
            if claim is not None:
                claims.append(claim)
        s.flush()
        return claims


def _claim_one(
    s: Session,
    t: datetime,
    d: Delivery,
    version: PostVersion,
    post_state: str,
    current_version_id: int | None,
    account: Account,
) -> Claim | None:
    """One delivery's claim inside :func:`_claim_many`'s transaction, its row and account locked; None where it
    is not sent now (and the reason recorded on it)."""
    if d.next_attempt_at and d.next_attempt_at > t:
        return None
    if post_state in lifecycle.RETRACTION:
        lifecycle.transition("delivery", d, "cancelled")
        return None
    if d.version_id != current_version_id:
        # Never send content that is no longer the post's: it was edited after this delivery was made (a
        # failed post); a retry moves the delivery to the new version once that is approved.
        _fail_unsent(d, "the post was edited after this delivery was made; retry the post to send the new version")
        settle_post(s, load_post(s, d.post_id))
        return None
    if account.status == "disabled":
        _fail_unsent(d, f"account {account.name} is disabled")
        settle_post(s, load_post(s, d.post_id))
        return None
    if account.status == "needs_reauth":
        _wait(d, "needs_reauth", None, f"account {account.name} needs re-authorisation")
        settle_post(s, load_post(s, d.post_id))
        return None
    if account.paused_until and account.paused_until > t:
        _wait(d, "retry_wait", account.paused_until, f"account paused until {format_local(account.paused_until)}")
        return None
    if account.status == "paused":
        account.status, account.paused_until, account.status_reason = "active", None, None
    depends_url = None
    if d.depends_on_id:
        dep = s.get(Delivery, d.depends_on_id)
        if dep is None or dep.state in ("failed", "cancelled", "retracted"):
            _fail_unsent(d, "the website copy this post links to was not published")
            settle_post(s, load_post(s, d.post_id))
            return None
        if dep.state != "published" or not dep.remote_url:
            if dep.state == "needs_reauth":  # recoverable: it waits, it does not fail
                d.last_error = "waits for the website copy, whose account needs re-authorisation"
            # Woken again when the website delivery publishes; the poller checks now and then too.
            d.next_attempt_at, d.claimed_by = t + timedelta(seconds=30), None
            return None
        depends_url = dep.remote_url
    cls = get_channel_class(account.kind)
    if cls.posts_per_hour:
        since = t - timedelta(hours=1)
        recent = s.scalars(_CLAIMED_SINCE, {"account_id": account.id, "delivery_id": d.id, "since": since}).all()
        if len(recent) >= cls.posts_per_hour:
            until = recent[len(recent) - cls.posts_per_hour] + timedelta(hours=1)
            _wait(d, "retry_wait", until, f"{cls.posts_per_hour} posts/hour limit of {account.kind}")
            return None
    try:
        info = account_info(account)
    except ConfigError as exc:
        # This worker cannot decrypt the account's credentials (a wrong or missing MATRIX_SECRET_KEY): no
        # retry can help until an admin fixes the key, so fail it with the reason (`matrix post retry` then).
        _fail_unsent(d, f"credentials cannot be decrypted by worker {WORKER_ID}: {exc}")
        audit(s, WORKER_ID, "delivery.error", d, error="ConfigError", message=d.last_error)
        notify_admins(
            s,
            account.organization_id,
            "secret_key",
            f"worker {WORKER_ID} cannot decrypt the credentials of account {account.name}: {exc} "
            "Its deliveries fail until the key is fixed; then `matrix post retry` the posts.",
            post_id=d.post_id,
        )
        post = load_post(s, d.post_id)
        notify_owner(s, post, "delivery_failed", f"post {post.id} on {account.name}: {d.last_error}")
        settle_post(s, post)
        return None
    lifecycle.transition("delivery", d, "sending")
    d.attempts += 1
    d.claimed_at, d.claimed_by = t, WORKER_ID
    # The attempt's audit row is written with its outcome (one turn at the audit chain's lock a delivery,
    # not two: every audited transaction of every worker queues on that one lock); an attempt whose worker
    # died has its claim in the delivery row and its "delivery.stuck" row from reconcile.
    # Look before posting only when an earlier attempt's outcome is unknown (answer lost, worker died);
    # after a definitive refusal the adapter resumes from the ids in ``progress`` instead.
    needs_lookup = d.outcome_unknown
    return Claim(d.id, d.post_id, info, (d, version, depends_url), needs_lookup, t, d.attempts)


def _wait(d: Delivery, state: str, until: Any, reason: str) -> None:
    if d.state != state:
        lifecycle.transition("delivery", d, state)
    d.next_attempt_at, d.last_error, d.claimed_by = until, reason, None


def _fail_unsent(d: Delivery, reason: str) -> None:
    lifecycle.transition("delivery", d, "sending")
    lifecycle.transition("delivery", d, "failed")
    d.last_error = reason


@dataclass
class Outcome:
    """What one attempt's platform calls came to: the platform's answer, or the error that ended them.

    ``still_unknown``: the error came from the lookup that had to find out whether an earlier attempt posted,
    so that is still unknown and the next attempt looks again (a failed lookup is no answer to the publish).
    """

    ok: PublishResult | None = None
    error: ChannelError | None = None
    still_unknown: bool = False


@appended_at_commit()
def deliver(delivery_id: int) -> str:
    """Claim and send one delivery. Returns the delivery's state afterwards ("skipped" if not claimed)."""
    claim = _claim(delivery_id)
    if claim is None:
        return "skipped"
    outcome = _attempt(claim)
    return _counted(claim.info.kind, _record(claim, ok=outcome.ok, error=outcome.error,
                                             still_unknown=outcome.still_unknown))  # fmt: skip


@appended_at_commit()
def deliver_many(delivery_ids: list[int]) -> dict[int, str]:
    """Claim, send and record a batch of deliveries (a slice of a fan-out): one claim transaction, the platform
    calls side by side (one thread each), one transaction recording every outcome. Returns each delivery's
    state afterwards ("skipped" for those not claimed).

    Why: a delivery alone paid a Celery task, two transactions with their commits and two turns at the audit
    chain's lock around a few hundred milliseconds of waiting on the platform; on two cores that CPU, not the
    network, capped a fan-out near 60 deliveries/s. The rules are those of :func:`deliver`: every delivery is
    claimed (locked, moved to ``sending``) before any call, and each outcome is recorded as it would be alone.
    """
    states = {delivery_id: "skipped" for delivery_id in delivery_ids}
    claims = _claim_many(delivery_ids)
    if not claims:
        return states
    outcomes = side_by_side(_attempt, claims)
    for claim, state in zip(claims, _record_many(claims, outcomes), strict=True):
        states[claim.delivery_id] = _counted(claim.info.kind, state)
    return states


def _attempt(claim: Claim) -> Outcome:
    """One claimed delivery's platform calls (a lookup first where an earlier outcome is unknown). Never raises
    for what a platform or an adapter did: that is the outcome."""
    token = logs.bind_until_reset(delivery_id=claim.delivery_id, post_id=claim.post_id)
    try:
        return _calls(claim)
    finally:
        logs.reset(token)


def _calls(claim: Claim) -> Outcome:
    try:
        # Before any platform call: a failure here (the database reading a cover, the token cache or limiter
        # being set up) left nothing on the platform, so it is retried, never taken for a lost answer.
        ctx = delivery_context(*claim.ctx_args, kind=claim.info.kind, fence=claim.attempt)
        channel = make_channel(claim.info)
    except Exception as exc:
        log.warning("delivery %s: not sent: %s", claim.delivery_id, exc.__class__.__name__)
        not_sent = NotSent(f"not sent: {exc.__class__.__name__} before the first request")
        return Outcome(error=not_sent, still_unknown=claim.needs_lookup)
    looking = claim.needs_lookup
    try:
        result: PublishResult | None = None
        if claim.needs_lookup:
            result = channel.lookup(ctx)
        looking = False
        if result is None:
            result = channel.publish(ctx)
        return Outcome(ok=result)
    except ChannelError as exc:
        return Outcome(error=exc, still_unknown=looking)
    except Exception as exc:  # a bug or an unexpected reply: the request may have gone out, so look later
        log.exception("delivery %s: unexpected error", claim.delivery_id)
        return Outcome(error=OutcomeUnknown(f"unexpected error: {exc!r}"))
    finally:
        channel.close()


def _counted(channel: str, state: str) -> str:
    """Count an attempt by channel and the state it left the delivery in (Prometheus), and pass it on."""
    DELIVERY_ATTEMPTS.labels(channel, state).inc()
    return state


def _record(
    claim: Claim,
    *,
    ok: PublishResult | None = None,
    error: ChannelError | None = None,
    still_unknown: bool = False,
) -> str:
    """Store the outcome of an attempt and move the post on. Wake-ups go out after commit.

    ``still_unknown``: the error came from the lookup that had to find out whether an earlier attempt posted,
    so that is still unknown and the next attempt looks again (a failed lookup is no answer to the publish).
    """
    with session_scope() as s:
        post, d = lock_post_and_delivery(s, claim.delivery_id, claim.post_id, shared=True)
        state = _record_in(s, claim, post, d, Outcome(ok, error, still_unknown))
        later = settles_later(s, post, d.id)
    if not later:
        settle_after_outcome(claim.post_id)
    return state


def _record_many(claims: list[Claim], outcomes: list[Outcome]) -> list[str]:
    """Record a batch's outcomes in one transaction: its posts locked in share mode, then its deliveries, each
    in the order of ids (the lock order of :func:`lock_post_and_delivery`); each outcome recorded as
    :func:`_record` records it alone. Returns each claim's state afterwards.

    Should the transaction fail (a deadlock, a bug in one outcome's path), each outcome is recorded alone
    instead, so one delivery's trouble is not the whole batch's."""
    try:
        return _record_batch(claims, outcomes)
    except Exception:
        log.warning("recording %d outcomes together failed; recording each alone", len(claims), exc_info=True)
    return [
        _record(claim, ok=outcome.ok, error=outcome.error, still_unknown=outcome.still_unknown)
        for claim, outcome in zip(claims, outcomes, strict=True)
    ]


def _record_batch(claims: list[Claim], outcomes: list[Outcome]) -> list[str]:
    states: dict[int, str] = {}
    with session_scope() as s:
        posts, deliveries = lock_batch(s, [c.post_id for c in claims], [c.delivery_id for c in claims])
        # in the order of their accounts: an outcome that pauses an account, or marks it for re-authorisation,
        # changes that row (see _ACCOUNTS_LOCKED)
        for claim, outcome in sorted(zip(claims, outcomes, strict=True), key=lambda pair: pair[0].info.id):
            d = deliveries.get(claim.delivery_id)
            if d is None:
                raise NotFound(f"delivery {claim.delivery_id} not found")
            states[claim.delivery_id] = _record_in(s, claim, posts[claim.post_id], d, outcome)
        to_settle = settled_after_batch(s, posts.values(), claims[0].delivery_id, len(claims))
    for post_id in to_settle:
        settle_after_outcome(post_id)
    return [states[c.delivery_id] for c in claims]


def _taken_over(s: Session, claim: Claim, post: Post, d: Delivery, outcome: Outcome) -> str:
    """The outcome of an attempt whose claim was taken over meanwhile (it stayed in ``sending`` past
    ``MATRIX_STUCK_AFTER_S``, and reconcile took it for a dead worker's). Its errors are not recorded: the
    delivery's new owner decides. A platform's answer that it posted is still the truth: recorded where nothing
    else is in flight (the delivery waits to be looked up or retried), and otherwise left to the attempt in
    flight, which looks before it posts (its delivery's outcome was unknown)."""
    audit(s, WORKER_ID, "delivery.attempt", d, happened_at=claim.attempt_at, attempt=claim.attempt, taken_over=True)
    if outcome.ok is not None and d.state in ("unconfirmed", "retry_wait"):
        apply_result(s, d, outcome.ok, post, kind=claim.info.kind)
    elif outcome.ok is not None:
        log.warning("delivery %s: attempt %s posted after its claim was taken over (%s)", d.id, claim.attempt, d.state)
    return d.state


def _record_in(s: Session, claim: Claim, post: Post, d: Delivery, outcome: Outcome) -> str:
    """One attempt's outcome on its delivery (locked, as its post), inside the caller's transaction; the
    delivery's state afterwards. The post is settled by the caller, after commit (see settles_later)."""
    ok, error, still_unknown = outcome.ok, outcome.error, outcome.still_unknown
    if d.state != "sending" or d.attempts != claim.attempt or isinstance(error, ClaimLost):
        return _taken_over(s, claim, post, d, outcome)
    settings = get_settings()
    audit(s, WORKER_ID, "delivery.attempt", d, happened_at=claim.attempt_at, attempt=claim.attempt)
    t = now()
    if ok is not None:
        apply_result(s, d, ok, post, kind=claim.info.kind)
        if d.state == "awaiting_manual":  # nothing more happens until a person posts it by hand
            notify_owner(
                s,
                post,
                "awaiting_manual",
                f"post {post.id} on {s.get(Account, d.account_id).name} waits for a person to post it by hand: "
                f"`matrix delivery package {d.id} -o delivery-{d.id}.zip`, then `matrix delivery confirm {d.id}`",
            )
    elif isinstance(error, QuotaExhausted):
        account = s.get(Account, d.account_id)
        until = error.paused_until or t + timedelta(hours=1)
        account.status, account.paused_until, account.status_reason = "paused", until, str(error)
        d.attempts -= 1  # a spent quota is not the delivery's failure
        _wait(d, "retry_wait", until, str(error))
        audit(s, WORKER_ID, "account.paused", account, until=until.isoformat(), reason=str(error))
    elif isinstance(error, TransientError):
        if isinstance(error, Throttled):
            d.attempts -= 1  # our own limiter held the request back: nothing was sent, so it is no attempt
        # A platform's "slow down" (429, WeChat's 45011) posted nothing and says to wait, not that the post is
        # bad: it may take several backoffs under a busy limit (a chaos run of 10,000 deliveries failed 4 after
        # 6), so it gives up only after four times as many attempts, the backoff grown to MATRIX_RETRY_MAX_S.
        limit = settings.max_attempts * RATE_LIMITED_FACTOR if isinstance(error, RateLimited) else settings.max_attempts
        if d.attempts >= limit:
            lifecycle.transition("delivery", d, "failed")
            d.last_error = f"gave up after {d.attempts} attempts: {error}"
        else:
            delay = backoff(d.attempts, error.retry_after)
            _wait(d, "retry_wait", t + timedelta(seconds=delay), str(error))
            if delay < settings.requeue_after_s:
                d.claimed_by = "queued"
                after_commit(s, enqueue, Task.DELIVER, d.id, countdown=delay)
    elif isinstance(error, OutcomeUnknown):
        lifecycle.transition("delivery", d, "unconfirmed")
        d.outcome_unknown, d.last_error = True, str(error)
    elif isinstance(error, NeedsReauth):
        account = s.get(Account, d.account_id)
        lifecycle.transition("delivery", d, "needs_reauth")
        d.last_error = str(error)
        account.status, account.status_reason = "needs_reauth", str(error)
        audit(s, WORKER_ID, "account.needs_reauth", account, reason=str(error), post=post.id)
        notify_owner(
            s,
            post,
            "needs_reauth",
            f"post {post.id}: account {account.name} ({account.kind}) needs re-authorisation: {error}. "
            f"Its deliveries wait; run `matrix account reauth {account.id}` once it is re-authorised.",
        )
    else:  # PermanentError and any other platform refusal: never retried
        assert isinstance(error, (PermanentError, ChannelError))  # noqa: S101 - for the type checker only
        lifecycle.transition("delivery", d, "failed")
        d.last_error = str(error)
        name = s.get(Account, d.account_id).name
        notify_owner(s, post, "delivery_failed", f"post {post.id} on {name}: {error}")
    if error is not None:
        # the platform answered (a refusal is an answer): the next attempt need not look first
        d.outcome_unknown = isinstance(error, OutcomeUnknown) or still_unknown
        audit(s, WORKER_ID, "delivery.error", d, error=type(error).__name__, message=str(error))
    return d.state
