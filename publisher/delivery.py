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
import os
import random
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import false, func, or_, select, update
from sqlalchemy.orm import Session

from channels.base import AccountInfo, Channel, DeliveryContext, PostContent, PublishResult, get_channel_class
from channels.errors import (
    ChannelError,
    NeedsReauth,
    OutcomeUnknown,
    PermanentError,
    QuotaExhausted,
    TransientError,
)
from publisher import lifecycle
from publisher.config import get_settings
from publisher.crypto import decrypt_credentials
from publisher.db import get_engine, session_scope
from publisher.errors import Conflict, InvalidInput, NotFound
from publisher.models import Account, Delivery, MetricSnapshot, Post, PostVersion, Schedule
from publisher.services import audit, get, notify_owner
from publisher.timeutil import format_local, now
from publisher.wakeups import after_commit, enqueue

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
READY_STATES = ("pending", "retry_wait")


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def idempotency_key(delivery_id: int) -> str:
    """Our key for a delivery, stored on the platform (slug, link parameter…) so lookups can find it."""
    return f"mm-{delivery_id}"


# -------------------------------------------------------------------------------------- adapters


def account_info(account: Account) -> AccountInfo:
    """The adapter's view of an account: decrypted credentials and config with the sandbox URL filled in."""
    return _info(account.id, account.kind, account.name, decrypt_credentials(account.credentials_enc), account.config)


def _info(account_id: int, kind: str, name: str, credentials: Any, config: dict[str, Any]) -> AccountInfo:
    sandbox = get_settings().sandbox_url
    config = {k: (v.replace("{sandbox}", sandbox) if isinstance(v, str) else v) for k, v in config.items()}
    return AccountInfo(id=account_id, kind=kind, name=name, credentials=credentials, config=config)


def check_credentials(
    kind: str, name: str, credentials: dict[str, Any], config: dict[str, Any], account_id: int = 0
) -> None:
    """Ask the platform whether these credentials work, before anyone stores them.

    Raises :class:`InvalidInput` with the platform's reason when it refuses them, or when it cannot be asked
    now (unreachable, rate-limited), so a typo in a password is found when the account is added, not at the
    first post.
    """
    channel = make_channel(_info(account_id, kind, name, credentials, config))
    try:
        channel.check_credentials()
    except NeedsReauth as exc:
        raise InvalidInput(f"{kind} refused these credentials: {exc}") from exc
    except PermanentError as exc:
        raise InvalidInput(f"{kind} account not usable: {exc}") from exc
    except ChannelError as exc:
        raise InvalidInput(f"cannot check the credentials with {kind} now: {exc} (or skip the check)") from exc
    finally:
        channel.close()


_token_cache: Any = None


def token_cache() -> Any:
    """The process-wide shared token cache: Redis in production, the database on the embedded default."""
    global _token_cache
    if _token_cache is None:
        from channels import tokens

        settings = get_settings()
        if settings.broker_url.startswith(("redis://", "rediss://")):
            import redis

            _token_cache = tokens.RedisTokenCache(redis.Redis.from_url(settings.broker_url))
        else:
            _token_cache = tokens.SqlTokenCache(get_engine())
    return _token_cache


def make_channel(info: AccountInfo) -> Channel:
    """An adapter instance for one account, wired to the shared token cache."""
    from channels.base import make_client

    cls = get_channel_class(info.kind)
    client = make_client(cls.base_url(info), timeout=get_settings().http_timeout_s)
    return cls(info, client, token_cache=token_cache())


def _context(d: Delivery, version: PostVersion, depends_url: str | None = None) -> DeliveryContext:
    delivery_id = d.id

    def save_progress(update_: dict[str, Any]) -> None:
        # Its own transaction, committed before the adapter makes its next call.
        with session_scope() as s:
            row = s.execute(select(Delivery).where(Delivery.id == delivery_id).with_for_update()).scalar_one()
            row.progress = {**(row.progress or {}), **update_}

    return DeliveryContext(
        delivery_id=d.id,
        idempotency_key=idempotency_key(d.id),
        content=PostContent(
            title=version.title, body=version.body, summary=version.summary, cover_url=version.cover_url
        ),
        progress=dict(d.progress or {}),
        remote_id=d.remote_id,
        remote_url=d.remote_url,
        depends_on_url=depends_url,
        save_progress=save_progress,
    )


# -------------------------------------------------------------------------------------- dispatch


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
        if _is_pg(s):
            q = q.with_for_update(skip_locked=True, of=Schedule)
        for schedule in s.scalars(q).all():
            _expand_schedule(s, schedule)
    t = now()  # after the expansion: the deliveries just made are due now, not on the next tick
    with session_scope() as s:
        q = (
            select(Delivery.id)
            .where(
                Delivery.state.in_(READY_STATES),
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= t),
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


def _expand_schedule(s: Session, schedule: Schedule) -> None:
    post = get(s, Post, schedule.post_id, lock=True)
    accounts = [get(s, Account, t.account_id) for t in post.targets]
    t = now()
    made: dict[int, Delivery] = {}
    for account in accounts:
        d = Delivery(
            post_id=post.id,
            version_id=post.current_version_id,
            account_id=account.id,
            schedule_id=schedule.id,
            state="pending",
            due_at=schedule.due_at,
            next_attempt_at=t,
        )
        s.add(d)
        made[account.id] = d
    s.flush()
    website = next((made[a.id] for a in accounts if a.kind == "website"), None)
    for account in accounts:
        if get_channel_class(account.kind).needs_website_link:
            d = made[account.id]
            if website is None:
                lifecycle.transition("delivery", d, "sending")
                lifecycle.transition("delivery", d, "failed")
                d.last_error = f"{account.kind} posts link to the website copy: add a website account to the post"
            else:
                d.depends_on_id = website.id
    schedule.state, schedule.dispatched_at = "dispatched", t
    lifecycle.transition("post", post, "publishing")
    audit(s, "scheduler", "post.dispatch", post, deliveries=[d.id for d in made.values()])


# --------------------------------------------------------------------------------------- deliver


@dataclass
class Claim:
    delivery_id: int
    info: AccountInfo
    ctx_args: tuple[Delivery, PostVersion, str | None]
    needs_lookup: bool


def _claim(delivery_id: int) -> Claim | None:
    """Atomically take a delivery for this worker, or return None (someone else has it / not due / blocked)."""
    t = now()
    with session_scope() as s:
        q = select(Delivery).where(Delivery.id == delivery_id)
        q = q.with_for_update(skip_locked=True) if _is_pg(s) else q
        d = s.execute(q).scalar_one_or_none()
        if d is None or d.state not in READY_STATES:
            return None
        if d.next_attempt_at and d.next_attempt_at > t:
            return None
        post = s.get(Post, d.post_id)
        if post is None or post.state == "retracted":
            lifecycle.transition("delivery", d, "cancelled")
            return None
        account = s.execute(select(Account).where(Account.id == d.account_id).with_for_update()).scalar_one()
        if account.status == "disabled":
            _fail_unsent(d, f"account {account.name} is disabled")
            _settle_post(s, post)
            return None
        if account.status == "needs_reauth":
            _wait(d, "needs_reauth", None, f"account {account.name} needs re-authorisation")
            _settle_post(s, post)
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
                _settle_post(s, post)
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
            recent = s.scalars(
                select(Delivery.claimed_at)
                .where(
                    Delivery.account_id == account.id,
                    Delivery.id != d.id,
                    Delivery.claimed_at >= since,
                    Delivery.state.notin_(("pending", "retry_wait", "cancelled", "failed")),
                )
                .order_by(Delivery.claimed_at)
            ).all()
            if len(recent) >= cls.posts_per_hour:
                until = recent[len(recent) - cls.posts_per_hour] + timedelta(hours=1)
                _wait(d, "retry_wait", until, f"{cls.posts_per_hour} posts/hour limit of {account.kind}")
                return None
        lifecycle.transition("delivery", d, "sending")
        d.attempts += 1
        d.claimed_at, d.claimed_by = t, WORKER_ID
        version = s.get(PostVersion, d.version_id)
        audit(s, WORKER_ID, "delivery.attempt", d, attempt=d.attempts)
        # Look before posting only when an earlier attempt's outcome is unknown (answer lost, worker died);
        # after a definitive refusal the adapter resumes from the ids in ``progress`` instead.
        needs_lookup = d.outcome_unknown
        s.flush()
        return Claim(d.id, account_info(account), (d, version, depends_url), needs_lookup)


def _wait(d: Delivery, state: str, until: Any, reason: str) -> None:
    if d.state != state:
        lifecycle.transition("delivery", d, state)
    d.next_attempt_at, d.last_error, d.claimed_by = until, reason, None


def _fail_unsent(d: Delivery, reason: str) -> None:
    lifecycle.transition("delivery", d, "sending")
    lifecycle.transition("delivery", d, "failed")
    d.last_error = reason


def deliver(delivery_id: int) -> str:
    """Claim and send one delivery. Returns the delivery's state afterwards ("skipped" if not claimed)."""
    claim = _claim(delivery_id)
    if claim is None:
        return "skipped"
    ctx = _context(*claim.ctx_args)
    channel = make_channel(claim.info)
    try:
        result: PublishResult | None = None
        if claim.needs_lookup:
            result = channel.lookup(ctx)
        if result is None:
            result = channel.publish(ctx)
        return _record(delivery_id, ok=result)
    except ChannelError as exc:
        return _record(delivery_id, error=exc)
    except Exception as exc:  # a bug or an unexpected reply: the request may have gone out, so look later
        log.exception("delivery %s: unexpected error", delivery_id)
        return _record(delivery_id, error=OutcomeUnknown(f"unexpected error: {exc!r}"))
    finally:
        channel.close()


def _backoff(attempt: int, retry_after: float | None) -> float:
    settings = get_settings()
    delay = min(settings.retry_max_s, settings.retry_base_s * 2 ** max(0, attempt - 1))
    delay = delay * (0.5 + random.random() / 2)  # jitter: workers that failed together don't retry together
    return max(delay, retry_after or 0.0)


def _lock_post_and_delivery(s: Session, delivery_id: int) -> tuple[Post, Delivery]:
    """Lock the delivery's post, then the delivery: always in this order, so recording outcomes of one
    post's deliveries is serialised (the post state derived from them never misses a concurrent change)."""
    post_id = s.execute(select(Delivery.post_id).where(Delivery.id == delivery_id)).scalar_one_or_none()
    if post_id is None:
        raise NotFound(f"delivery {delivery_id} not found")
    post = get(s, Post, post_id, lock=True)
    d = s.execute(select(Delivery).where(Delivery.id == delivery_id).with_for_update()).scalar_one()
    return post, d


def _record(delivery_id: int, *, ok: PublishResult | None = None, error: ChannelError | None = None) -> str:
    """Store the outcome of an attempt and move the post on. Wake-ups go out after commit."""
    settings = get_settings()
    with session_scope() as s:
        post, d = _lock_post_and_delivery(s, delivery_id)
        account = s.get(Account, d.account_id)
        t = now()
        if ok is not None:
            _apply_result(s, d, ok, post)
        elif isinstance(error, QuotaExhausted):
            until = error.paused_until or t + timedelta(hours=1)
            account.status, account.paused_until, account.status_reason = "paused", until, str(error)
            d.attempts -= 1  # a spent quota is not the delivery's failure
            _wait(d, "retry_wait", until, str(error))
            audit(s, WORKER_ID, "account.paused", account, until=until.isoformat(), reason=str(error))
        elif isinstance(error, TransientError):
            if d.attempts >= settings.max_attempts:
                lifecycle.transition("delivery", d, "failed")
                d.last_error = f"gave up after {d.attempts} attempts: {error}"
            else:
                delay = _backoff(d.attempts, error.retry_after)
                _wait(d, "retry_wait", t + timedelta(seconds=delay), str(error))
                if delay < settings.requeue_after_s:
                    d.claimed_by = "queued"
                    after_commit(s, enqueue, "matrix.deliver", d.id, countdown=delay)
        elif isinstance(error, OutcomeUnknown):
            lifecycle.transition("delivery", d, "unconfirmed")
            d.outcome_unknown, d.last_error = True, str(error)
        elif isinstance(error, NeedsReauth):
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
            assert isinstance(error, (PermanentError, ChannelError))
            lifecycle.transition("delivery", d, "failed")
            d.last_error = str(error)
            notify_owner(s, post, "delivery_failed", f"post {post.id} on {account.name}: {error}")
        if error is not None:
            # the platform answered (a refusal is an answer): the next attempt need not look first
            d.outcome_unknown = isinstance(error, OutcomeUnknown)
            audit(s, WORKER_ID, "delivery.error", d, error=type(error).__name__, message=str(error))
        _settle_post(s, post)
        return d.state


def _apply_result(s: Session, d: Delivery, result: PublishResult, post: Post) -> None:
    target = result.state if result.state in ("published", "awaiting_confirmation", "awaiting_manual") else "published"
    if d.state == "retry_wait":  # a late answer for a delivery that was given up on meanwhile: the truth wins
        d.state = "sending"
    lifecycle.transition("delivery", d, target)
    d.remote_id = result.remote_id or d.remote_id
    d.remote_url = result.url or d.remote_url
    d.outcome_unknown, d.last_error, d.claimed_by = False, None, None
    if target == "published":
        d.published_at = now()
        _wake_dependants(s, d)
        if post.state == "retracted":
            after_commit(s, enqueue, "matrix.retract_delivery", d.id)
    audit(s, WORKER_ID, f"delivery.{target}", d, remote_id=d.remote_id, url=d.remote_url)


def _wake_dependants(s: Session, d: Delivery) -> None:
    dependants = s.scalars(select(Delivery).where(Delivery.depends_on_id == d.id, Delivery.state == "pending")).all()
    for dep in dependants:
        dep.next_attempt_at, dep.claimed_by = now(), "queued"
        after_commit(s, enqueue, "matrix.deliver", dep.id)


def _settle_post(s: Session, post: Post) -> None:
    if post.state not in ("publishing", "published", "partially_published", "failed"):
        return
    states = list(s.scalars(select(Delivery.state).where(Delivery.post_id == post.id)).all())
    target = lifecycle.post_state_from_deliveries(states)
    if target != post.state and lifecycle.can("post", post.state, target):
        lifecycle.transition("post", post, target)
        audit(s, "system", f"post.{target}", post)


# ------------------------------------------------------------------------------------- reconcile


def reconcile(limit: int = 200) -> dict[str, int]:
    """Resolve deliveries stuck in sending / unconfirmed / awaiting_confirmation by asking the platform."""
    settings = get_settings()
    t = now()
    counts = {"stuck": 0, "unconfirmed": 0, "awaiting": 0, "posts": 0}
    with session_scope() as s:
        stuck = s.scalars(
            select(Delivery)
            .where(Delivery.state == "sending", Delivery.claimed_at < t - timedelta(seconds=settings.stuck_after_s))
            .limit(limit)
        ).all()
        for d in stuck:  # its worker died or hangs: whether it posted is unknown
            lifecycle.transition("delivery", d, "unconfirmed")
            d.outcome_unknown, d.last_error = True, "worker stopped during the attempt"
            audit(s, "reconcile", "delivery.stuck", d, claimed_by=d.claimed_by)
        counts["stuck"] = len(stuck)
    for state, handler in (("unconfirmed", _resolve_unconfirmed), ("awaiting_confirmation", _resolve_awaiting)):
        with session_scope() as s:
            ids = list(
                s.scalars(
                    select(Delivery.id)
                    .where(
                        Delivery.state == state, or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= t)
                    )
                    .limit(limit)
                ).all()
            )
        for delivery_id in ids:
            try:
                handler(delivery_id)
            except ChannelError as exc:  # leave it for the next round
                log.warning("reconcile %s delivery %s: %s", state, delivery_id, exc)
                _note(delivery_id, str(exc))
        counts["unconfirmed" if state == "unconfirmed" else "awaiting"] = len(ids)
    with session_scope() as s:
        for post in s.scalars(select(Post).where(Post.state == "publishing").with_for_update()).all():
            before = post.state
            _settle_post(s, post)
            counts["posts"] += before != post.state
    return counts


def _note(delivery_id: int, message: str) -> None:
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        if d is not None:
            d.last_error = message
            d.next_attempt_at = now() + timedelta(seconds=get_settings().reconcile_interval_s)


def _load_for_platform(delivery_id: int, state: str) -> tuple[Channel, DeliveryContext] | None:
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        if d is None or d.state != state:
            return None
        version = s.get(PostVersion, d.version_id)
        depends_url = None
        if d.depends_on_id:
            dep = s.get(Delivery, d.depends_on_id)
            depends_url = dep.remote_url if dep else None
        return make_channel(account_info(d.account)), _context(d, version, depends_url)


def _resolve_unconfirmed(delivery_id: int) -> None:
    loaded = _load_for_platform(delivery_id, "unconfirmed")
    if loaded is None:
        return
    channel, ctx = loaded
    try:
        found = channel.lookup(ctx)
    finally:
        channel.close()
    with session_scope() as s:
        post, d = _lock_post_and_delivery(s, delivery_id)
        if d.state != "unconfirmed":
            return
        if found is not None:
            _apply_result(s, d, found, post)
        else:  # looked, and it is not there: safe to send again (the next attempt looks once more first)
            lifecycle.transition("delivery", d, "retry_wait")
            d.next_attempt_at, d.claimed_by = now(), "queued"
            after_commit(s, enqueue, "matrix.deliver", d.id)
        audit(s, "reconcile", "delivery.reconciled", d, found=found is not None)
        _settle_post(s, post)


def _resolve_awaiting(delivery_id: int) -> None:
    loaded = _load_for_platform(delivery_id, "awaiting_confirmation")
    if loaded is None:
        return
    channel, ctx = loaded
    try:
        status = channel.status(ctx)
    finally:
        channel.close()
    with session_scope() as s:
        post, d = _lock_post_and_delivery(s, delivery_id)
        if d.state != "awaiting_confirmation":
            return
        if status.state == "published":
            lifecycle.transition("delivery", d, "published")
            d.remote_url, d.published_at = status.url or d.remote_url, now()
            _wake_dependants(s, d)
        elif status.state == "failed":
            lifecycle.transition("delivery", d, "failed")
            d.last_error = status.reason or "the platform refused the post"
            notify_owner(s, post, "delivery_failed", f"post {post.id} on {d.account.name}: {d.last_error}")
        elif status.state == "retracted":
            lifecycle.transition("delivery", d, "retracted")
            d.last_error = status.reason or "removed on the platform"
            notify_owner(s, post, "removed_by_platform", f"post {post.id} on {d.account.name}: {d.last_error}")
        else:
            return
        audit(s, "reconcile", f"delivery.{d.state}", d, reason=status.reason, url=status.url)
        _settle_post(s, post)


# --------------------------------------------------------------------------------------- metrics


def collect_metrics(max_age_days: int = 30) -> int:
    """Snapshot engagement numbers of recently published deliveries, one adapter call batch per account."""
    since = now() - timedelta(days=max_age_days)
    with session_scope() as s:
        rows = s.scalars(select(Delivery).where(Delivery.state == "published", Delivery.published_at >= since)).all()
        by_account: dict[int, list[tuple[Delivery, PostVersion]]] = {}
        for d in rows:
            by_account.setdefault(d.account_id, []).append((d, s.get(PostVersion, d.version_id)))
        infos = {d.account_id: account_info(d.account) for d in rows}
    taken = 0
    for account_id, items in by_account.items():
        channel = make_channel(infos[account_id])
        if not channel.supports_metrics:
            channel.close()
            continue
        try:
            numbers = channel.metrics([_context(d, v) for d, v in items])
        except ChannelError as exc:
            log.warning("metrics for account %s: %s", account_id, exc)
            continue
        finally:
            channel.close()
        with session_scope() as s:
            for delivery_id, m in numbers.items():
                s.add(
                    MetricSnapshot(
                        delivery_id=delivery_id, reads=m.reads, likes=m.likes, shares=m.shares, comments=m.comments
                    )
                )
                taken += 1
    return taken


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


# --------------------------------------------------------------------------------------- retract


def retract_post(post_id: int, actor: str = "editor") -> list[dict[str, Any]]:
    """Retract a post everywhere. Returns one line per delivery: account, outcome, detail."""
    with session_scope() as s:
        post = get(s, Post, post_id, lock=True)
        if post.state not in ("published", "partially_published", "publishing", "failed"):
            raise Conflict(f"post {post.id} is {post.state}; only a post that went out can be retracted")
        lifecycle.transition("post", post, "retracted")
        audit(s, actor, "post.retract", post)
        ids = [d.id for d in s.scalars(select(Delivery).where(Delivery.post_id == post.id)).all()]
    return [retract_delivery(i, actor) for i in ids]


def retract_delivery(delivery_id: int, actor: str = "system") -> dict[str, Any]:
    """Retract (or cancel) one delivery; idempotent."""
    with session_scope() as s:
        d = get(s, Delivery, delivery_id, lock=True)
        line = {"delivery": d.id, "account": d.account.name, "kind": d.account.kind}
        if d.state in ("pending", "retry_wait", "needs_reauth", "failed", "awaiting_manual"):
            lifecycle.transition("delivery", d, "cancelled")
            audit(s, actor, "delivery.cancelled", d)
            return {**line, "outcome": "cancelled", "detail": "never posted"}
        if d.state in ("retracted", "cancelled"):
            return {**line, "outcome": d.state, "detail": "already"}
        if d.state in ("sending", "unconfirmed"):
            return {**line, "outcome": "in_flight", "detail": "retracted automatically once it settles"}
        version = s.get(PostVersion, d.version_id)
        info = account_info(d.account)
        ctx = _context(d, version)
    channel = make_channel(info)  # the instance decides: an assisted account of an API platform has no API
    if not channel.supports_retract:
        channel.close()
        name = channel.display_name or info.kind
        return {
            **line,
            "outcome": "manual",
            "detail": f"{name}: delete it by hand, then `matrix delivery removed {delivery_id}`",
        }
    try:
        channel.retract(ctx)
    except ChannelError as exc:
        with session_scope() as s:
            d = get(s, Delivery, delivery_id)
            d.last_error = f"retraction failed: {exc}"
            audit(s, actor, "delivery.retract_failed", d, error=str(exc))
        return {**line, "outcome": "error", "detail": str(exc)}
    finally:
        channel.close()
    with session_scope() as s:
        d = get(s, Delivery, delivery_id, lock=True)
        if d.state in ("published", "awaiting_confirmation"):
            lifecycle.transition("delivery", d, "retracted")
        audit(s, actor, "delivery.retracted", d)
    return {**line, "outcome": "retracted", "detail": ""}


def confirm_manual(delivery_id: int, url: str, actor: str = "operator") -> Delivery:
    """An operator posted an assisted delivery by hand: record its URL; it counts as published."""
    if not url.startswith(("http://", "https://")):
        from publisher.errors import InvalidInput

        raise InvalidInput(f"not a URL: {url!r}")
    with session_scope() as s:
        post, d = _lock_post_and_delivery(s, delivery_id)
        if d.state != "awaiting_manual":
            raise Conflict(f"delivery {d.id} is {d.state}; only an awaiting_manual delivery can be confirmed")
        _apply_result(s, d, PublishResult(remote_id=d.remote_id or idempotency_key(d.id), url=url), post)
        audit(s, actor, "delivery.confirmed", d, url=url)
        _settle_post(s, post)
        return d


def confirm_removed(delivery_id: int, actor: str = "operator") -> Delivery:
    """An operator deleted by hand a delivery that has no retraction API (after its post was retracted)."""
    with session_scope() as s:
        post, d = _lock_post_and_delivery(s, delivery_id)
        if post.state != "retracted":
            raise Conflict(f"post {post.id} is {post.state}; retract the post first (`matrix post retract {post.id}`)")
        if d.state != "published":
            raise Conflict(f"delivery {d.id} is {d.state}; only a published delivery can be recorded as removed")
        lifecycle.transition("delivery", d, "retracted")
        audit(s, actor, "delivery.removed_by_hand", d, url=d.remote_url)
        return d
