"""Read models of the dashboards: the publishing calendar, engagement over time, the top posts and the matrix's
ranking. Each is scoped by the actor (the organisations whose posts they may view) and is one or two aggregate
queries; nothing here queries per row.

**Engagement over time.** A delivery's :class:`MetricSnapshot` rows are its history of cumulative numbers. A
day's value of a delivery is its latest snapshot that (local) day; a day's value of a series is the sum of those
over the deliveries that have one that day.

**The matrix index (矩阵传播指数, MMI).** Ours, in the spirit of 清博's WCI (微信传播指数) — *not* WCI itself,
whose published formula uses per-article averages, peaks and platform-specific normalisation. Over the window
(``days``), for an account (or an organisation, over the deliveries of its own accounts):

- ``N``: deliveries published in the window (the publishing frequency),
- ``R``, ``L``, ``S``, ``C``: the reads, likes, shares and comments of those deliveries (each delivery's newest
  snapshot, summed),

and the index is ``100 × (0.15·ln(1+N) + 0.40·ln(1+R) + 0.20·ln(1+L) + 0.15·ln(1+S) + 0.10·ln(1+C))``, rounded
to two decimals. The logarithms keep one viral post from outweighing steady publishing; the weights favour reach
(reads), then approval (likes) and spread (shares), then conversation (comments). Scores compare within one
window only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core.clock import now
from core.errors import InvalidInput
from core.settings import get_settings
from publisher.domain.models import (
    Account,
    Delivery,
    MetricSnapshot,
    Organization,
    Post,
    PostTarget,
    PostVersion,
    Schedule,
)
from publisher.services.common import subtree
from publisher.services.people import Principal, visible_orgs

METRICS = ("reads", "likes", "shares", "comments")
INDEX_WEIGHTS = {"posts": 0.15, "reads": 0.40, "likes": 0.20, "shares": 0.15, "comments": 0.10}
CLASH_WINDOW = timedelta(hours=1)  # two posts to one account closer than this clash
DAYS_MAX = 366
WINDOW_MAX = timedelta(days=62)  # the longest calendar window one request may ask for


def matrix_index(posts: int, reads: int, likes: int, shares: int, comments: int) -> float:
    """The matrix index of the module docstring (ours, in the spirit of WCI) from the window's totals."""
    values = {"posts": posts, "reads": reads, "likes": likes, "shares": shares, "comments": comments}
    return round(100 * sum(w * math.log1p(max(0, values[k])) for k, w in INDEX_WEIGHTS.items()), 2)


def _check_days(days: int) -> None:
    if not 1 <= days <= DAYS_MAX:
        raise InvalidInput(f"days must be between 1 and {DAYS_MAX}")


def _scope(session: Session, actor: Principal, organization_id: int | None) -> set[int] | None:
    """The organisations to count: those ``actor`` may view, narrowed to ``organization_id``'s subtree."""
    orgs = visible_orgs(session, actor, "post.view")
    if organization_id is not None:
        wanted = subtree(session, [organization_id])
        orgs = wanted if orgs is None else orgs & wanted
    return orgs


def _utc_offset() -> timedelta:
    """The configured zone's offset now (a fixed offset buckets days in SQL; exact for zones without DST)."""
    return now().astimezone(get_settings().tz).utcoffset() or timedelta(0)


def _local_day(session: Session, column: Any) -> ColumnElement[Any]:
    """The local calendar day of a stored (naive UTC) time, as an SQL expression (``YYYY-MM-DD`` or a date)."""
    seconds = int(_utc_offset().total_seconds())
    if session.get_bind().dialect.name == "sqlite":
        return func.date(column, f"{seconds:+d} seconds")
    return func.date(column + literal(timedelta(seconds=seconds)))


def _day_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _window_start(days: int) -> tuple[datetime, date]:
    """The aware UTC instant the window begins (local midnight ``days - 1`` days ago) and that local day."""
    tz = get_settings().tz
    first = now().astimezone(tz).date() - timedelta(days=days - 1)
    return datetime(first.year, first.month, first.day, tzinfo=tz).astimezone(UTC), first


# ------------------------------------------------------------------------------------------ calendar


def calendar_events(
    session: Session,
    actor: Principal,
    start: datetime,
    end: datetime,
    organization: int | None = None,
    channel: str | None = None,
    state: str | None = None,
) -> list[dict[str, Any]]:
    """Posts going out (a pending schedule's due time, one event per target account) and gone out (a delivery's
    publication time) in ``[start, end)``, by time: post id, title, state, account, channel (the account's
    kind), ``kind`` (``scheduled`` / ``published``) and ``clash``: another post goes to the same account within
    an hour of it (also one just outside the window)."""
    if end <= start:
        raise InvalidInput("the calendar window ends before it starts")
    if end - start > WINDOW_MAX:
        raise InvalidInput(f"a calendar window is at most {WINDOW_MAX.days} days")
    orgs = _scope(session, actor, organization)
    lo, hi = start - CLASH_WINDOW, end + CLASH_WINDOW
    cols = (Post.id, Post.state, PostVersion.title, Account.id, Account.name, Account.kind, Post.organization_id)
    scheduled = (
        select(*cols, Schedule.due_at)
        .join(Post, Post.id == Schedule.post_id)
        .join(PostTarget, PostTarget.post_id == Post.id)
        .join(Account, Account.id == PostTarget.account_id)
        .outerjoin(PostVersion, PostVersion.id == Post.current_version_id)
        .where(Schedule.state == "pending", Schedule.due_at >= lo, Schedule.due_at < hi)
    )
    published = (
        select(*cols, Delivery.published_at)
        .join(Post, Post.id == Delivery.post_id)
        .join(Account, Account.id == Delivery.account_id)
        .outerjoin(PostVersion, PostVersion.id == Post.current_version_id)
        .where(Delivery.published_at.is_not(None), Delivery.published_at >= lo, Delivery.published_at < hi)
    )

    def narrowed(q: Select[Any]) -> Select[Any]:
        if orgs is not None:
            q = q.where(Post.organization_id.in_(orgs))
        if channel:
            q = q.where(Account.kind == channel)
        if state:
            q = q.where(Post.state == state)
        return q

    events: list[dict[str, Any]] = []
    for kind, q in (("scheduled", scheduled), ("published", published)):
        for post_id, post_state, title, account_id, account, account_kind, org_id, at in session.execute(narrowed(q)):
            events.append(
                {"post_id": post_id, "title": title or "", "state": post_state, "kind": kind, "at": at,
                 "account_id": account_id, "account": account, "channel": account_kind,
                 "organization_id": org_id, "clash": False}
            )  # fmt: skip
    _mark_clashes(events)
    events = [e for e in events if start <= e["at"] < end]
    events.sort(key=lambda e: (e["at"], e["post_id"], e["account_id"]))
    return events


def _mark_clashes(events: list[dict[str, Any]]) -> None:
    """Set ``clash`` on each event with another post's event on its account less than an hour away."""
    by_account: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_account[e["account_id"]].append(e)
    for rows in by_account.values():
        rows.sort(key=lambda e: e["at"])
        for i, e in enumerate(rows):
            for other in rows[i + 1 :]:
                if other["at"] - e["at"] >= CLASH_WINDOW:
                    break
                if other["post_id"] != e["post_id"]:
                    e["clash"] = other["clash"] = True


# ------------------------------------------------------------------------------------------ engagement


def _delivery_filters(
    orgs: set[int] | None, post_id: int | None, account_id: int | None, channel: str | None
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if orgs is not None:
        where.append(Post.organization_id.in_(orgs))
    if post_id is not None:
        where.append(Delivery.post_id == post_id)
    if account_id is not None:
        where.append(Delivery.account_id == account_id)
    if channel:
        where.append(Account.kind == channel)
    return where


def engagement_series(
    session: Session,
    actor: Principal,
    post_id: int | None = None,
    account_id: int | None = None,
    channel: str | None = None,
    organization_id: int | None = None,
    days: int = 30,
) -> list[dict[str, Any]]:
    """Engagement per local day over the last ``days`` days (today included), oldest first, every day present:
    ``{"day": "YYYY-MM-DD", "reads", "likes", "shares", "comments"}`` — each delivery's latest snapshot of the
    day, summed over the deliveries in scope (and the filters)."""
    _check_days(days)
    orgs = _scope(session, actor, organization_id)
    since, first = _window_start(days)
    day = _local_day(session, MetricSnapshot.taken_at).label("day")
    latest = (
        select(MetricSnapshot.delivery_id, day, func.max(MetricSnapshot.id).label("mid"))
        .join(Delivery, Delivery.id == MetricSnapshot.delivery_id)
        .join(Post, Post.id == Delivery.post_id)
        .join(Account, Account.id == Delivery.account_id)
        .where(MetricSnapshot.taken_at >= since, *_delivery_filters(orgs, post_id, account_id, channel))
        .group_by(MetricSnapshot.delivery_id, day)
        .subquery()
    )
    sums = select(latest.c.day, *(func.coalesce(func.sum(getattr(MetricSnapshot, m)), 0) for m in METRICS))
    sums = sums.join(MetricSnapshot, MetricSnapshot.id == latest.c.mid).group_by(latest.c.day)
    found = {_day_text(d): values for d, *values in session.execute(sums)}
    series = []
    for i in range(days):
        key = (first + timedelta(days=i)).isoformat()
        values = found.get(key, (0, 0, 0, 0))
        series.append({"day": key, **{m: int(v) for m, v in zip(METRICS, values, strict=True)}})
    return series


def _newest_snapshots() -> Any:
    """Each delivery's newest snapshot id (a subquery: ``delivery_id``, ``mid``)."""
    return (
        select(MetricSnapshot.delivery_id, func.max(MetricSnapshot.id).label("mid"))
        .group_by(MetricSnapshot.delivery_id)
        .subquery()
    )


def top_posts(
    session: Session,
    actor: Principal,
    channel: str | None = None,
    organization_id: int | None = None,
    days: int = 30,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The posts published in the window with the most reads (then likes), each with its deliveries' newest
    numbers summed: ``{"post_id", "title", "organization", "deliveries", "reads", "likes", "shares",
    "comments"}``."""
    _check_days(days)
    if not 1 <= limit <= 500:
        raise InvalidInput("limit must be between 1 and 500")
    orgs = _scope(session, actor, organization_id)
    since, _ = _window_start(days)
    newest = _newest_snapshots()
    totals = [func.coalesce(func.sum(getattr(MetricSnapshot, m)), 0).label(m) for m in METRICS]
    q = (
        select(Post.id, PostVersion.title, Organization.name, func.count(Delivery.id.distinct()), *totals)
        .select_from(Delivery)
        .join(Post, Post.id == Delivery.post_id)
        .join(Organization, Organization.id == Post.organization_id)
        .join(Account, Account.id == Delivery.account_id)
        .outerjoin(PostVersion, PostVersion.id == Post.current_version_id)
        .outerjoin(newest, newest.c.delivery_id == Delivery.id)
        .outerjoin(MetricSnapshot, MetricSnapshot.id == newest.c.mid)
        .where(Delivery.published_at >= since, *_delivery_filters(orgs, None, None, channel))
        .group_by(Post.id, PostVersion.title, Organization.name)
        .order_by(totals[0].desc(), totals[1].desc(), Post.id.desc())
        .limit(limit)
    )
    return [
        {"post_id": pid, "title": title or "", "organization": org, "deliveries": n,
         **{m: int(v) for m, v in zip(METRICS, values, strict=True)}}
        for pid, title, org, n, *values in session.execute(q)
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------ ranking


def matrix_ranking(session: Session, actor: Principal, days: int = 30) -> dict[str, list[dict[str, Any]]]:
    """The matrix index (module docstring) over the last ``days`` days, highest first, ``{"accounts": [...],
    "organizations": [...]}``: each row its name, ``posts`` (N), reads, likes, shares, comments and ``index``;
    every account (and organisation with accounts) in scope is ranked, those without activity at 0."""
    _check_days(days)
    orgs = visible_orgs(session, actor, "post.view")
    since, _ = _window_start(days)
    newest = _newest_snapshots()
    totals = [func.coalesce(func.sum(getattr(MetricSnapshot, m)), 0) for m in METRICS]
    q = (
        select(
            Account.id, Account.name, Account.kind, Organization.id, Organization.name, func.count(Delivery.id), *totals
        )
        .join(Organization, Organization.id == Account.organization_id)
        .outerjoin(Delivery, and_(Delivery.account_id == Account.id, Delivery.published_at >= since))
        .outerjoin(newest, newest.c.delivery_id == Delivery.id)
        .outerjoin(MetricSnapshot, MetricSnapshot.id == newest.c.mid)
        .group_by(Account.id, Account.name, Account.kind, Organization.id, Organization.name)
    )
    if orgs is not None:
        q = q.where(Account.organization_id.in_(orgs))
    accounts: list[dict[str, Any]] = []
    by_org: dict[int, dict[str, Any]] = {}
    for account_id, name, kind, org_id, org_name, n, *values in session.execute(q):
        numbers = {"posts": int(n), **{m: int(v) for m, v in zip(METRICS, values, strict=True)}}
        accounts.append({"account_id": account_id, "account": name, "channel": kind, "organization": org_name,
                         **numbers, "index": matrix_index(**numbers)})  # fmt: skip
        row = by_org.setdefault(org_id, {"organization_id": org_id, "organization": org_name, "accounts": 0,
                                         "posts": 0, **dict.fromkeys(METRICS, 0)})  # fmt: skip
        row["accounts"] += 1
        for key, value in numbers.items():
            row[key] += value
    organizations = list(by_org.values())
    for row in organizations:
        row["index"] = matrix_index(row["posts"], *(row[m] for m in METRICS))
    accounts.sort(key=lambda r: (-r["index"], r["account_id"]))
    organizations.sort(key=lambda r: (-r["index"], r["organization_id"]))
    for rank, row in enumerate(accounts, 1):
        row["rank"] = rank
    for rank, row in enumerate(organizations, 1):
        row["rank"] = rank
    return {"accounts": accounts, "organizations": organizations}
