"""Demo data of the monitor for a fresh ``matrix up``: feeds on the feed sandbox, the comments on our own posts,
two keyword rules, so that a monitor who signs in to a new installation sees a stream to work with.

The feeds are RSSHub-shaped routes of the feed sandbox mounted at ``/feeds`` of the platform sandboxes (any
route serves a normal day of union and workers' posts; :mod:`monitor.sandbox`). Idempotent: a source, rule or
channel of the same name is left as it is. An installation for real use starts with ``--no-demo``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor import comments, services
from monitor.models import Rule, Source
from publisher.services.people import Principal

#: (name, RSSHub-shaped route on the feed sandbox, tags)
DEMO_FEEDS: tuple[tuple[str, str, list[str]], ...] = (
    ("微博关键词：工会", "weibo/keyword/工会", ["weibo"]),
    ("微博关键词：欠薪", "weibo/keyword/欠薪", ["weibo", "wages"]),
    ("头条关键词：劳动者", "toutiao/keyword/劳动者", ["toutiao"]),
    ("公众号：职工之家", "wechat/mp/zhigongzhijia", ["wechat"]),
)
DEMO_RULES: tuple[tuple[str, str], ...] = (
    ("欠薪讨薪", "欠薪 OR 拖欠 OR 讨薪 OR (工资 NEAR/6 没发)"),
    ("工伤与安全", "工伤 OR 受伤 OR 安全事故 OR (安全 NEAR/4 隐患)"),
)


def seed_monitor(session: Session, actor: Principal, sandbox_url: str, organization: str) -> int:
    """Add the demo sources and rules to ``organization`` (as ``actor``); returns how many were added."""
    added = 0
    have = set(session.scalars(select(Source.name)))
    for name, route, tags in DEMO_FEEDS:
        if name not in have:
            url = f"{sandbox_url.rstrip('/')}/feeds/{route}"
            services.add_source(session, actor, url=url, name=name, organization=organization, tags=tags)
            added += 1
    if not session.scalar(select(Source.id).where(Source.kind == comments.KIND)):
        services.add_comments_source(session, actor, organization=organization, name="我们发布内容的评论")
        added += 1
    rules = set(session.scalars(select(Rule.name)))
    for name, query in DEMO_RULES:
        if name not in rules:
            services.add_rule(session, actor, name=name, query_text=query, organization=organization)
            added += 1
    return added
