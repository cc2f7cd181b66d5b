"""What monitors and admins do: sources, rules, and the read models (items, stories) every interface renders.

Each service takes the session, then the acting :class:`~publisher.services.people.Principal`, and asks
:func:`~publisher.services.people.require` (``monitor.view`` / ``monitor.manage``, on the object's
organisation or above it) before it reads or changes anything; it commits nothing itself. Errors are
:mod:`core.errors`, one line each.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import iso_local, now
from core.db import after_commit
from core.errors import Conflict, InvalidInput, NotFound
from monitor import comments, query
from monitor.models import NAME_MAX, URL_MAX, Alert, CommentCursor, Item, Rule, RuleHit, Sighting, Source, Story
from monitor.queue import MonitorTask, enqueue
from monitor.settings import MonitorSettings, get_monitor_settings
from publisher.domain.models import Account, Delivery, Organization, PostVersion
from publisher.services.common import audit, check_length, get
from publisher.services.people import Principal, find_organization, require, visible_orgs

TAGS_MAX = 20
TAG_MAX = 40
LIST_MAX = 500
SCOPE_SOURCES_MAX = 200


def _org_for(session: Session, actor: Principal, organization: int | str | None, action: str) -> Organization:
    """The organisation named, or the one the actor holds the action's role on (when exactly one)."""
    if organization is not None:
        org = find_organization(session, organization)
    else:
        require(session, actor, action)  # no such role anywhere: Forbidden, not "say which organisation"
        allowed = visible_orgs(session, actor, action)
        grants = sorted({o for role, o in actor.grants if allowed is None or o in allowed})
        if len(grants) != 1:
            raise InvalidInput("say which organisation (--org): you may act for more than one, or none")
        org = find_organization(session, grants[0])
    require(session, actor, action, org.id)
    return org


def _tags(tags: list[str] | None) -> list[str]:
    cleaned = list(dict.fromkeys(t.strip() for t in (tags or []) if t.strip()))
    if len(cleaned) > TAGS_MAX:
        raise InvalidInput(f"at most {TAGS_MAX} tags")
    for tag in cleaned:
        check_length("a tag", tag, TAG_MAX)
    return cleaned


# ------------------------------------------------------------------------------------------- sources


def add_source(
    session: Session,
    actor: Principal,
    *,
    url: str,
    name: str = "",
    organization: int | str | None = None,
    interval_s: int | None = None,
    tags: list[str] | None = None,
    settings: MonitorSettings | None = None,
) -> Source:
    """A new feed source, due at once; the URL must be http(s) (the guard judges its address when fetched)."""
    settings = settings or get_monitor_settings()
    org = _org_for(session, actor, organization, "monitor.manage")
    url = url.strip()
    check_length("the URL", url, URL_MAX)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput("a source URL is http:// or https:// with a host")
    name = (name or parsed.host).strip()
    check_length("the name", name, NAME_MAX)
    interval = settings.default_interval_s if interval_s is None else int(interval_s)
    if not settings.min_interval_s <= interval <= 7 * 86_400:
        raise InvalidInput(f"interval is {interval} s; between {settings.min_interval_s} s and 7 days")
    if session.scalar(select(Source.id).where(Source.organization_id == org.id, Source.url == url)):
        raise Conflict(f"{org.name} already has a source for {url}")
    source = Source(
        organization_id=org.id,
        name=name,
        url=url,
        interval_s=interval,
        tags=_tags(tags),
        next_poll_at=now(),
        created_by=actor.user_id,
    )
    session.add(source)
    session.flush()
    audit(session, actor, "monitor.source.add", source, url=url, organization=org.name)
    return source


def add_comments_source(
    session: Session,
    actor: Principal,
    *,
    organization: int | str | None = None,
    account: int | None = None,
    name: str = "",
    interval_s: int | None = None,
    tags: list[str] | None = None,
    settings: MonitorSettings | None = None,
) -> Source:
    """A new source of the comments on the organisation's own published posts (or on one of its accounts'),
    due at once. The account must be the organisation's; without ``organization``, one account names it."""
    settings = settings or get_monitor_settings()
    acct = None
    if account is not None:
        acct = session.get(Account, int(account))
        allowed = visible_orgs(session, actor, "monitor.manage")
        if acct is None or (allowed is not None and acct.organization_id not in allowed):
            raise NotFound(f"account {account} not found")  # another organisation's is not shown to exist
        if organization is None:
            organization = acct.organization_id
    org = _org_for(session, actor, organization, "monitor.manage")
    if acct is not None and acct.organization_id != org.id:
        # an account of another organisation is not this monitor's to read, whatever they may see
        raise InvalidInput(f"account {acct.id} ({acct.name}) is not an account of {org.name}")
    name = (name or (f"{acct.name} 的评论" if acct is not None else f"{org.name} 的评论")).strip()
    check_length("the name", name, NAME_MAX)
    interval = settings.comments_interval_s if interval_s is None else int(interval_s)
    if not settings.min_interval_s <= interval <= 7 * 86_400:
        raise InvalidInput(f"interval is {interval} s; between {settings.min_interval_s} s and 7 days")
    url = comments.scope_url(org.id, acct.id if acct is not None else None)
    if session.scalar(select(Source.id).where(Source.organization_id == org.id, Source.url == url)):
        what = f"account {acct.id}" if acct is not None else org.name
        raise Conflict(f"{org.name} already has a comments source for {what}")
    source = Source(
        organization_id=org.id,
        name=name,
        url=url,
        kind=comments.KIND,
        account_id=acct.id if acct is not None else None,
        interval_s=interval,
        tags=_tags(tags),
        next_poll_at=now(),
        created_by=actor.user_id,
    )
    session.add(source)
    session.flush()
    audit(session, actor, "monitor.source.add", source, url=url, organization=org.name, kind=comments.KIND)
    return source


def find_source(session: Session, actor: Principal, source_id: int, action: str = "monitor.view") -> Source:
    """A source the actor may ``action`` (404 for one outside their organisations, as if it did not exist)."""
    source = get(session, Source, source_id)
    allowed = visible_orgs(session, actor, action)
    if allowed is not None and source.organization_id not in allowed:
        raise NotFound(f"source {source_id} not found")
    require(session, actor, action, source.organization_id)
    return source


def set_source_state(session: Session, actor: Principal, source_id: int, *, paused: bool) -> Source:
    """Pause a source, or resume it (due at once, failures forgotten)."""
    source = find_source(session, actor, source_id, "monitor.manage")
    if paused:
        source.state, source.state_reason = "paused", f"paused by {actor.name}"
    else:
        source.state, source.state_reason, source.failures, source.next_poll_at = "active", None, 0, now()
    audit(session, actor, "monitor.source.pause" if paused else "monitor.source.resume", source)
    return source


def source_row(session: Session, source: Source) -> dict[str, Any]:
    """The read model of a source."""
    org = session.get(Organization, source.organization_id)
    account = session.get(Account, source.account_id) if source.account_id is not None else None
    return {
        "id": source.id,
        "name": source.name,
        "kind": source.kind,
        "url": source.url,
        "account": {"id": account.id, "kind": account.kind, "name": account.name} if account else None,
        "organization": org.name if org else None,
        "interval_s": source.interval_s,
        "tags": list(source.tags or []),
        "state": source.state,
        "state_reason": source.state_reason,
        "failures": source.failures,
        "last_error": source.last_error,
        "last_status": source.last_status,
        "fetches": source.fetch_count,
        "parses": source.parse_count,
        "last_fetched_at": iso_local(source.last_fetched_at),
        "next_poll_at": iso_local(source.next_poll_at),
    }


def source_rows(
    session: Session, actor: Principal, *, limit: int = LIST_MAX, offset: int = 0, tag: str | None = None
) -> list[dict[str, Any]]:
    """The sources the actor may see, by id."""
    require(session, actor, "monitor.view")
    q = select(Source).order_by(Source.id)
    allowed = visible_orgs(session, actor, "monitor.view")
    if allowed is not None:
        q = q.where(Source.organization_id.in_(allowed))
    rows = [s for s in session.scalars(q) if tag is None or tag in (s.tags or [])]
    return [source_row(session, s) for s in rows[offset : offset + min(limit, LIST_MAX)]]


def poll_now(session: Session, actor: Principal, source_ids: list[int] | None = None) -> list[int]:
    """Make sources due now and wake the poller; ``None``: every active source the actor may manage."""
    if source_ids:
        sources = [find_source(session, actor, i, "monitor.manage") for i in source_ids]
    else:
        require(session, actor, "monitor.manage")
        q = select(Source).where(Source.state == "active")
        allowed = visible_orgs(session, actor, "monitor.manage")
        if allowed is not None:
            q = q.where(Source.organization_id.in_(allowed))
        sources = list(session.scalars(q))
    for source in sources:
        if source.state != "active":
            raise Conflict(f"source {source.id} is paused; resume it first")
        source.next_poll_at = now()
    after_commit(session, enqueue, MonitorTask.POLL_DUE)
    return [s.id for s in sources]


def claim_due(session: Session, *, limit: int, lease_s: float) -> list[int]:
    """Beat: claim active sources that are due and not in flight; their ids, to poll one task each."""
    t = now()
    q = (
        select(Source)
        .where(Source.state == "active", Source.next_poll_at <= t)
        .where((Source.claimed_until.is_(None)) | (Source.claimed_until < t))
        .order_by(Source.next_poll_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    due = list(session.scalars(q))
    for source in due:
        source.claimed_until = t + timedelta(seconds=lease_s)
    return [s.id for s in due]


# --------------------------------------------------------------------------------------------- rules


def _scope(session: Session, actor: Principal, sources: list[int] | None, tags: list[str] | None) -> dict[str, Any]:
    ids = list(dict.fromkeys(sources or []))
    if len(ids) > SCOPE_SOURCES_MAX:
        raise InvalidInput(f"a rule names at most {SCOPE_SOURCES_MAX} sources")
    for source_id in ids:
        find_source(session, actor, source_id, "monitor.view")
    return {"sources": ids, "tags": _tags(tags)}


def add_rule(
    session: Session,
    actor: Principal,
    *,
    name: str,
    query_text: str,
    organization: int | str | None = None,
    sources: list[int] | None = None,
    tags: list[str] | None = None,
) -> Rule:
    """A new rule; the query is parsed now, so a bad one is refused with its reason."""
    org = _org_for(session, actor, organization, "monitor.manage")
    name = name.strip()
    if not name:
        raise InvalidInput("a rule needs a name")
    check_length("the name", name, NAME_MAX)
    query.parse(query_text)
    rule = Rule(
        organization_id=org.id,
        name=name,
        query=query_text.strip(),
        scope=_scope(session, actor, sources, tags),
        created_by=actor.user_id,
    )
    session.add(rule)
    session.flush()
    audit(session, actor, "monitor.rule.add", rule, name=name, query=rule.query)
    return rule


def rule_rows(session: Session, actor: Principal, *, limit: int = LIST_MAX, offset: int = 0) -> list[dict[str, Any]]:
    """The rules the actor may see, with their hit and alert counts."""
    require(session, actor, "monitor.view")
    q = select(Rule).order_by(Rule.id)
    allowed = visible_orgs(session, actor, "monitor.view")
    if allowed is not None:
        q = q.where(Rule.organization_id.in_(allowed))
    rules = list(session.scalars(q.limit(min(limit, LIST_MAX)).offset(offset)))
    ids = [r.id for r in rules]
    hits = dict(
        session.execute(
            select(RuleHit.rule_id, func.count()).where(RuleHit.rule_id.in_(ids)).group_by(RuleHit.rule_id)
        ).all()
    )
    alerts = dict(
        session.execute(select(Alert.rule_id, func.count()).where(Alert.rule_id.in_(ids)).group_by(Alert.rule_id)).all()
    )
    names = dict(session.execute(select(Organization.id, Organization.name)).all())
    return [
        {
            "id": r.id,
            "name": r.name,
            "query": r.query,
            "organization": names.get(r.organization_id),
            "scope": r.scope,
            "enabled": r.enabled,
            "hits": hits.get(r.id, 0),
            "alerts": alerts.get(r.id, 0),
        }
        for r in rules
    ]


# --------------------------------------------------------------------------------------- items, stories


def _visible_source_ids(session: Session, actor: Principal) -> list[int] | None:
    allowed = visible_orgs(session, actor, "monitor.view")
    if allowed is None:
        return None
    return list(session.scalars(select(Source.id).where(Source.organization_id.in_(allowed))))


def _visible_item_ids(session: Session, actor: Principal):
    """A subquery of the item ids the actor may see: those sighted by a source of theirs."""
    ids = _visible_source_ids(session, actor)
    q = select(Sighting.item_id)
    return q if ids is None else q.where(Sighting.source_id.in_(ids))


def item_row(session: Session, item: Item) -> dict[str, Any]:
    """The read model of an item (its HTML sanitised when it was stored)."""
    sources = sorted(set(session.scalars(select(Sighting.source_id).where(Sighting.item_id == item.id))))
    rule_ids = sorted(session.scalars(select(RuleHit.rule_id).where(RuleHit.item_id == item.id)))
    scores = item.scores or {}
    return {
        "id": item.id,
        "comment_of": comment_of(session, item),
        "story_id": item.story_id,
        "title": item.title,
        "link": item.link,
        "author": item.author,
        "text": item.text,
        "summary_html": item.summary_html,
        "published_at": iso_local(item.published_at),
        "fetched_at": iso_local(item.fetched_at),
        "sources": sources,
        "negativity": round(item.negativity, 4),
        "needs": sorted((scores.get("needs") or {}).keys()),
        "mentions": scores.get("mentions", []),
        "moderation": {k: v for k, v in (scores.get("moderation") or {}).items() if k in ("decision", "categories")},
        "rules": rule_ids,
    }


def comment_of(session: Session, item: Item) -> dict[str, Any] | None:
    """Where a comment was written ("in whose comments"): the post, its delivery and account; ``None`` for an
    item of a feed."""
    if item.delivery_id is None:
        return None
    delivery = session.get(Delivery, item.delivery_id)
    account = session.get(Account, item.account_id) if item.account_id is not None else None
    version = session.get(PostVersion, delivery.version_id) if delivery is not None else None
    url = (delivery.remote_url or "") if delivery is not None else ""
    return {
        "delivery_id": item.delivery_id,
        "post_id": item.post_id,
        "post_title": version.title if version is not None else "",
        "post_url": url if url.lower().startswith(("https://", "http://")) else None,  # shown as a link
        "account_id": item.account_id,
        "account": account.name if account is not None else None,
        "platform": account.kind if account is not None else None,
    }


def comment_cursor_rows(session: Session, actor: Principal, source_id: int) -> list[dict[str, Any]]:
    """A comments source's cursors: per delivery, comments read, state, last error, last poll."""
    source = find_source(session, actor, source_id)
    rows = session.scalars(
        select(CommentCursor).where(CommentCursor.source_id == source.id).order_by(CommentCursor.delivery_id)
    )
    return [
        {
            "delivery_id": c.delivery_id,
            "comments": c.comments,
            "state": c.state,
            "last_error": c.last_error,
            "last_polled_at": iso_local(c.last_polled_at),
        }
        for c in rows
    ]


def item_rows(
    session: Session,
    actor: Principal,
    *,
    rule_id: int | None = None,
    story_id: int | None = None,
    need: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Items the actor may see, newest first; filtered by a rule's hits, a story or a need."""
    require(session, actor, "monitor.view")
    q = select(Item).where(Item.id.in_(_visible_item_ids(session, actor))).order_by(Item.id.desc())
    if rule_id is not None:
        q = q.where(Item.id.in_(select(RuleHit.item_id).where(RuleHit.rule_id == rule_id)))
    if story_id is not None:
        q = q.where(Item.story_id == story_id)
    limit = min(limit, LIST_MAX)
    if need is None:
        return [item_row(session, i) for i in session.scalars(q.limit(limit).offset(offset))]
    # A need lives in the scores' JSON (no portable index on it): read newest first, in batches, and stop as
    # soon as the page is full, instead of loading every item.
    page: list[Item] = []
    skipped = 0
    for item in session.scalars(q.execution_options(yield_per=500)):
        if need not in ((item.scores or {}).get("needs") or {}):
            continue
        if skipped < offset:
            skipped += 1
            continue
        page.append(item)
        if len(page) >= limit:
            break
    return [item_row(session, i) for i in page]


def story_rows(session: Session, actor: Principal, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Stories with items the actor may see, most recently active first, with how many sources carried them."""
    require(session, actor, "monitor.view")
    visible = _visible_item_ids(session, actor)
    q = (
        select(Story)
        .where(Story.id.in_(select(Item.story_id).where(Item.id.in_(visible))))
        .order_by(Story.last_seen_at.desc(), Story.id.desc())
        .limit(min(limit, LIST_MAX))
        .offset(offset)
    )
    rows = []
    for story in session.scalars(q):
        item_ids = select(Item.id).where(Item.story_id == story.id)
        sources = session.scalar(
            select(func.count(func.distinct(Sighting.source_id))).where(Sighting.item_id.in_(item_ids))
        )
        rows.append(
            {
                "id": story.id,
                "title": story.title,
                "items": story.item_count,
                "sources": sources or 0,
                "first_seen_at": iso_local(story.first_seen_at),
                "last_seen_at": iso_local(story.last_seen_at),
            }
        )
    return rows


def story_detail(session: Session, actor: Principal, story_id: int) -> dict[str, Any]:
    """One story and its items (404 unless the actor may see one of them)."""
    require(session, actor, "monitor.view")
    story = get(session, Story, story_id)
    items = item_rows(session, actor, story_id=story.id, limit=LIST_MAX)
    if not items:
        raise NotFound(f"story {story_id} not found")
    return {"id": story.id, "title": story.title, "items": items}
