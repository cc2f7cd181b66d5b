"""Comments on our own published posts as a monitor source: what to read, reading it, and the cursors.

A source of kind ``comments`` covers the published deliveries of its organisation's own accounts (or of one
account) published within the last ``MATRIX_MONITOR_COMMENTS_DAYS`` days. Each poll reads, per delivery, the
comments that came after that delivery's cursor, through the account's channel adapter
(:meth:`channels.base.Channel.comments`: WordPress ``wp/v2/comments``, Weibo ``comments/show``, WeChat
``comment/list``), made by the publisher's factory so the account's shared rate limit and token cache hold for
these calls too. Each comment becomes an :class:`~monitor.parse.Entry` with a stable GUID (``weibo:comment:<id>``…)
and its origin (delivery, account, post); :mod:`monitor.pipeline` scores, stores, clusters and matches them as it
does feed entries, and saves the cursors in the transaction that stores the items, so a crash between the two
reads the same comments again (they are then sightings already, stored once) and never skips any.

Per delivery, errors stay there: a post whose comments are closed (WeChat 88000) records its error on its cursor
and the others are read; a dead credential or a rate limit stops that account's reads for this poll. A post the
platform says is gone (Weibo 20101, WeChat 88001) is marked ``gone`` and not asked again. The source fails (and
backs off, as a feed does) only when no delivery could be read at all.
"""

from __future__ import annotations

import html
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import AccountInfo, Comment, DeliveryContext
from channels.errors import ChannelError, NeedsReauth, OutcomeUnknown, TransientError
from core.clock import now
from core.db import session_scope
from core.errors import ConfigError
from monitor.errors import FetchError, MonitorError, RetryLater
from monitor.models import NAME_MAX, URL_MAX, CommentCursor, Source
from monitor.parse import TEXT_MAX, Entry
from monitor.settings import MonitorSettings
from monitor.text import sanitize
from publisher.delivery.context import delivery_context
from publisher.domain.models import Account, Delivery, PostVersion
from publisher.services.channels import account_info, make_channel

log = logging.getLogger(__name__)

KIND = "comments"


def scope_url(organization_id: int, account_id: int | None) -> str:
    """The ``url`` a comments source is stored under: its scope, unique per organisation as feed URLs are."""
    return f"comments:account:{account_id}" if account_id is not None else f"comments:org:{organization_id}"


@dataclass
class _Target:
    """One delivery to read: its context for the adapter, where the last poll stopped, and where it came from."""

    delivery_id: int
    ctx: DeliveryContext
    cursor: dict[str, Any]
    origin: dict[str, Any]


@dataclass
class CursorUpdate:
    """What one delivery's read left: the new cursor, comments read, ``gone``, or the error that stopped it."""

    cursor: dict[str, Any]
    read: int = 0
    gone: bool = False
    error: str | None = None


@dataclass
class CommentsFetch:
    """One poll's reads: the entries, a cursor update per delivery tried, and what failed.

    ``failure`` is set when deliveries were due but none could be read: the source's failure (a transient one
    when every error was)."""

    entries: list[Entry] = field(default_factory=list)
    updates: dict[int, CursorUpdate] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    failure: MonitorError | None = None
    deliveries: int = 0


def fetch_comments(source_id: int, settings: MonitorSettings) -> CommentsFetch | None:
    """Read the new comments of every delivery in the source's scope; ``None`` if it is gone or paused.

    The scope is read in one short transaction; the platforms are called outside any.
    """
    with session_scope() as session:
        source = session.get(Source, source_id)
        if source is None or source.state != "active" or source.kind != KIND:
            return None
        accounts, targets, skipped = _targets(session, source, settings)
    result = CommentsFetch(deliveries=sum(len(t) for t in targets.values()), errors=skipped)
    transient = not skipped
    retry_after: float | None = None
    for account_id, info in accounts.items():
        channel = make_channel(info)
        try:
            if not channel.supports_comments:
                continue  # Toutiao, manual accounts: no API to read comments from
            for target in targets.get(account_id, []):
                try:
                    batch = channel.comments(target.ctx, target.cursor, limit=settings.comments_per_post)
                except (TransientError, OutcomeUnknown, NeedsReauth) as exc:
                    # the account's rate, quota or credential: its other posts would fare no better now
                    message = f"{info.kind} account {account_id} ({info.name}): {exc}"
                    result.errors.append(message)
                    result.updates[target.delivery_id] = CursorUpdate(target.cursor, error=str(exc)[:2000])
                    transient = transient and not isinstance(exc, NeedsReauth)
                    if isinstance(exc, TransientError) and exc.retry_after is not None:
                        retry_after = max(retry_after or 0.0, exc.retry_after)
                    break
                except ChannelError as exc:  # this post's own trouble (comments closed, a bad id): the rest go on
                    result.errors.append(f"delivery {target.delivery_id} on {info.kind} account {account_id}: {exc}")
                    result.updates[target.delivery_id] = CursorUpdate(target.cursor, error=str(exc)[:2000])
                    transient = False
                    continue
                result.updates[target.delivery_id] = CursorUpdate(
                    batch.cursor, read=len(batch.comments), gone=batch.gone
                )
                result.entries.extend(_entry(c, target.origin) for c in batch.comments)
        finally:
            channel.close()
    read = [u for u in result.updates.values() if u.error is None]
    if result.deliveries and not read and result.errors:
        reason = "; ".join(result.errors)[:1500]
        result.failure = (
            RetryLater(f"no comments could be read: {reason}", retry_after=retry_after)
            if transient
            else FetchError(f"no comments could be read: {reason}")
        )
    return result


def _targets(
    session: Session, source: Source, settings: MonitorSettings
) -> tuple[dict[int, AccountInfo], dict[int, list[_Target]], list[str]]:
    """The accounts and deliveries a poll reads (newest published first, at most ``comments_posts_max``)."""
    since = now() - timedelta(days=settings.comments_days)
    q = (
        select(Delivery, Account)
        .join(Account, Account.id == Delivery.account_id)
        .where(Delivery.state == "published", Delivery.published_at >= since)
        .order_by(Delivery.published_at.desc(), Delivery.id.desc())
    )
    if source.account_id is not None:
        q = q.where(Account.id == source.account_id)
    else:
        q = q.where(Account.organization_id == source.organization_id)
    cursors = {
        c.delivery_id: c for c in session.scalars(select(CommentCursor).where(CommentCursor.source_id == source.id))
    }
    accounts: dict[int, AccountInfo] = {}
    targets: dict[int, list[_Target]] = defaultdict(list)
    skipped: list[str] = []
    refused: set[int] = set()
    taken = 0
    for delivery, account in session.execute(q):
        kept = cursors.get(delivery.id)
        if (kept is not None and kept.state == "gone") or account.id in refused:
            continue
        if taken >= settings.comments_posts_max:
            break
        if account.id not in accounts:
            if account.status == "needs_reauth":
                refused.add(account.id)  # a person must re-authorise it first; every call would be refused
                skipped.append(f"{account.kind} account {account.id} ({account.name}) needs re-authorisation")
                continue
            try:
                accounts[account.id] = account_info(account)
            except ConfigError as exc:  # credentials this worker cannot decrypt: the other accounts still count
                refused.add(account.id)
                skipped.append(f"{account.kind} account {account.id}: {exc}")
                continue
        version = session.get(PostVersion, delivery.version_id)
        if version is None:
            continue
        targets[account.id].append(
            _Target(
                delivery_id=delivery.id,
                ctx=delivery_context(delivery, version, with_cover=False, kind=account.kind),
                cursor=dict(kept.cursor or {}) if kept is not None else {},
                origin={"delivery_id": delivery.id, "account_id": account.id, "post_id": delivery.post_id},
            )
        )
        taken += 1
    return accounts, dict(targets), skipped


def _entry(comment: Comment, origin: dict[str, Any]) -> Entry:
    """A comment as the pipeline stores it: no title (the post's would make every comment match its words)."""
    body = comment.text[:TEXT_MAX]
    return Entry(
        guid=comment.guid,
        link=comment.link[:URL_MAX],
        title="",
        summary_html=sanitize(f"<p>{html.escape(body)}</p>"),
        text=body,
        author=comment.author[:NAME_MAX],
        published_at=comment.created_at,
        identity=comment.guid,
        origin=dict(origin),
    )


def save_cursors(session: Session, source_id: int, fetched: CommentsFetch) -> None:
    """Write the poll's cursor updates (in the transaction that stores its items)."""
    if not fetched.updates:
        return
    rows = {
        c.delivery_id: c
        for c in session.scalars(
            select(CommentCursor).where(
                CommentCursor.source_id == source_id, CommentCursor.delivery_id.in_(list(fetched.updates))
            )
        )
    }
    t = now()
    for delivery_id, update in fetched.updates.items():
        row = rows.get(delivery_id)
        if row is None:
            row = CommentCursor(source_id=source_id, delivery_id=delivery_id, cursor={}, state="active", comments=0)
            session.add(row)
        if update.error is None:
            row.cursor = update.cursor
            row.comments = (row.comments or 0) + update.read
            row.state = "gone" if update.gone else "active"
        row.last_error = update.error
        row.last_polled_at = t
