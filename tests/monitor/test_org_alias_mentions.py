"""Mentions by alias (issue 13): a polled item naming an organisation by one of its aliases, in any spelling the
normaliser folds, carries the organisation's id in ``scores["mentions"]``; an alias removed names it no more."""

from __future__ import annotations

from sqlalchemy import select

from core.db import session_scope
from monitor import services
from monitor.models import Item
from monitor.pipeline import _Mentions, poll_source
from monitor.settings import MonitorSettings
from publisher.domain.models import Organization
from publisher.services.organizations import add_alias, remove_alias
from tests.monitor.conftest import Feeds
from tests.support.people import CITY, DISTRICT, PROVINCE, SYSTEM, Person


def _ids() -> dict[str, int]:
    with session_scope() as s:
        return dict((name, org_id) for org_id, name in s.execute(select(Organization.id, Organization.name)))


def _post_and_poll(feeds: Feeds, source_id: int, route: str, title: str, text: str, settings: MonitorSettings) -> list:
    feeds.call("repost", routes=[route], title=title, text=text, edits=False)
    outcome = poll_source(source_id, settings=settings)
    assert outcome.new_items == 1, outcome
    with session_scope() as s:
        item = s.scalar(select(Item).where(Item.title == title))
        assert item is not None
        return item.scores["mentions"]


def test_an_item_naming_an_alias_mentions_its_organisation(
    people: dict[str, Person], feeds: Feeds, settings: MonitorSettings
) -> None:
    route = "weibo/user/alias"
    with session_scope() as s:
        source_id = services.add_source(s, people["city"].principal, url=feeds.url(route), organization=CITY).id
        add_alias(s, SYSTEM, PROVINCE, "江苏总工会")
        add_alias(s, SYSTEM, DISTRICT, "玄武区总")
    ids = _ids()
    # 江蘇總工會 in traditional characters is the alias 江苏总工会 once normalised; no name of the tree is in the text
    mentions = _post_and_poll(feeds, source_id, route, "关于欠薪", "江蘇總工會和玄武区总介入某厂欠薪一事。", settings)
    assert mentions == sorted([ids[PROVINCE], ids[DISTRICT]])
    # a name still counts, alone, as before
    assert _post_and_poll(feeds, source_id, route, "市里", "市总工会召开全委会议。", settings) == [ids[CITY]]
    with session_scope() as s:
        remove_alias(s, SYSTEM, PROVINCE, "江苏总工会")
    # the next poll reads the aliases again: the removed one names nothing
    assert _post_and_poll(feeds, source_id, route, "再谈欠薪", "江苏总工会再谈欠薪。", settings) == []


def test_overlapping_names_and_aliases_are_all_found() -> None:
    """One pass finds every term that occurs, overlapping ones too, as ``term in text`` per term did."""
    mentions = _Mentions(
        ((1, "南京市总工会"), (2, "市总工会"), (3, "总工会"), (3, "江苏总工会"), (4, " "), (5, "无锡"))
    )
    assert mentions("南京市总工会与江苏总工会") == [1, 2, 3]
    assert mentions("无锡") == [5] and mentions("") == [] and _Mentions(())("南京市总工会") == []
