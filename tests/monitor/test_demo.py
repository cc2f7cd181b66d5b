"""A fresh `matrix up` gives the monitor something to watch: the feed sandbox is mounted at /feeds of the platform
sandboxes, and the demo seeding adds feeds on it, the comments on our own posts and two rules, once."""

from __future__ import annotations

from sqlalchemy import func, select

from channels.sandbox.server import RunningServer
from core.db import session_scope
from monitor.demo import DEMO_FEEDS, DEMO_RULES, seed_monitor
from monitor.models import Item, Rule, Source
from monitor.pipeline import poll_sources
from monitor.settings import MonitorSettings
from publisher import services
from publisher.services.demo import PROVINCE
from tests.support.people import Person


def test_the_demo_sources_are_seeded_once_and_their_feeds_answer(
    people: dict[str, Person], sandbox_server: RunningServer, settings: MonitorSettings
) -> None:
    with session_scope() as s:
        added = seed_monitor(s, services.SYSTEM, sandbox_server.url, PROVINCE)
    assert added == len(DEMO_FEEDS) + 1 + len(DEMO_RULES)
    with session_scope() as s:
        assert seed_monitor(s, services.SYSTEM, sandbox_server.url, PROVINCE) == 0  # idempotent
        feeds = list(s.scalars(select(Source.id).where(Source.kind == "feed").order_by(Source.id)))
        assert len(feeds) == len(DEMO_FEEDS) and s.scalar(select(func.count()).select_from(Rule)) == len(DEMO_RULES)
    # the routes are the feed sandbox's, mounted as `matrix up` serves it: every one gives a normal day of posts
    outcomes = poll_sources(feeds, settings=settings)
    assert [o.status for o in outcomes] == ["new"] * len(DEMO_FEEDS), outcomes
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Item)) > len(DEMO_FEEDS)
