"""Bursts: a rule's hour far over its EWMA baseline raises one burst naming the words that rose, in-app and on
the robots; the baseline hours are rows written in the past, the burst hour comes through the real pipeline."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from core.clock import now
from core.db import session_scope
from core.notify import Notification
from monitor import alert_channels, alerting, bursts, services
from monitor.models import AlertSend, Burst, Item, RuleHit, Source, Story
from monitor.pipeline import poll_source
from monitor.settings import MonitorSettings
from publisher.interfaces.api import app
from tests.monitor.conftest import Feeds, Robots
from tests.support.people import CITY, Person

BASELINE = [
    "某公司拖欠工资两个月，员工讨薪",
    "外卖站点欠薪，骑手维权",
    "建筑工地欠薪，农民工求助",
    "工厂欠薪半年，工人投诉",
]


def test_ewma_and_zscore() -> None:
    mean, std = bursts.ewma([2, 2, 2, 2, 2], 0.3)
    assert (mean, std) == (2.0, 0.0)
    assert bursts.zscore(12, mean, std, 1.0) == 10.0  # a flat baseline: the floor of the deviation decides
    mean, std = bursts.ewma([0, 10, 0, 10, 0, 10], 0.3)
    assert 3 < mean < 7 and std > 3 and bursts.zscore(12, mean, std, 1.0) < 3  # a jumpy series: 12 is no burst
    assert bursts.ewma([], 0.3) == (0.0, 0.0)


def test_rising_terms_are_the_words_of_the_hour_not_of_the_baseline() -> None:
    hour = [
        "某电子厂突然停工，数百名工人聚集讨要欠薪",
        "电子厂停工，工人聚集厂门口讨要欠薪",
        "停工的电子厂拖欠工人欠薪",
    ]
    terms = bursts.rising_terms(hour, BASELINE * 3)
    assert "停工" in terms and "电子厂" in terms and "欠薪" not in terms


def _baseline(source_id: int, rule_id: int, hours: int) -> None:
    """One matching item an hour for ``hours`` hours before this one (as the pipeline would have stored it)."""
    with session_scope() as s:
        for h in range(1, hours + 1):
            at = now() - timedelta(hours=h)
            text = BASELINE[h % len(BASELINE)] + f"（{h}）"
            story = Story(title=text, item_count=1, first_seen_at=at, last_seen_at=at)
            s.add(story)
            s.flush()
            key = hashlib.sha256(text.encode()).hexdigest()
            item = Item(story_id=story.id, source_id=source_id, link_hash="", title=text, text=text, fetched_at=at,
                        content_hash=key, scores={"needs": {"wages": ["欠薪"]}})  # fmt: skip
            s.add(item)
            s.flush()
            s.add(RuleHit(rule_id=rule_id, item_id=item.id, story_id=story.id, created_at=at))


def test_a_burst_is_alerted_once_with_its_terms_in_app_and_on_the_robot(
    people: dict[str, Person], feeds: Feeds, robots: Robots, settings: MonitorSettings
) -> None:
    city = people["city"]
    with session_scope() as s:
        rule = services.add_rule(s, city.principal, name="欠薪", query_text="欠薪", organization=CITY).id
        source = services.add_source(s, city.principal, url=feeds.url("weibo/keyword/欠薪"), organization=CITY).id
        alert_channels.add_channel(s, city.principal, kind="wecom", name="企微", organization=CITY,
                                   webhook=robots.add("wecom", "burst"))  # fmt: skip
    _baseline(source, rule, hours=12)
    cities = ["南京", "苏州", "无锡", "常州", "徐州", "南通", "扬州", "盐城", "镇江", "泰州", "宿迁", "淮安"]
    told_by = [{"title": f"{c}网友：电子厂停工", "text": f"{c}网友称某电子厂突然停工，{n + 2}百名工人聚集讨要欠薪。"}
               for n, c in enumerate(cities)]  # fmt: skip
    feeds.call("items", route="weibo/keyword/欠薪", items=told_by)
    assert poll_source(source, settings=settings).new_items >= 10
    with session_scope() as s:
        found = {b.key: (b.count, b.zscore, list(b.terms)) for b in bursts.detect(s, settings)}
    count, z, terms = found[f"rule:{rule}"]
    assert count >= 10 and z >= settings.burst_z
    assert "停工" in terms and "欠薪" not in terms  # 欠薪 is every baseline hour's word: it did not rise
    assert f"need:{_org(source)}:wages" in found  # the need rose with it
    with session_scope() as s:
        assert bursts.detect(s, settings) == []  # once per key and hour, and then the cool-down
        told = [n.message for n in s.scalars(select(Notification).where(Notification.kind == "monitor.burst"))]
        sends = list(s.scalars(select(AlertSend).where(AlertSend.burst_id.is_not(None))))
        rule_burst = s.scalar(select(Burst.id).where(Burst.key == f"rule:{rule}"))
    assert any("停工" in m and "欠薪" in m for m in told)
    (send,) = [x for x in sends if x.burst_id == rule_burst]
    assert alerting.deliver(send.id, settings=settings) == "sent"
    (got,) = robots.messages("wecom", "burst")["accepted"][-1:]
    assert "舆情突增" in got["content"] and "上升词" in got["content"] and "停工" in got["content"]
    listed = TestClient(app).get("/monitor/bursts", headers=city.headers).json()
    mine = next(b for b in listed if b["key"] == f"rule:{rule}")
    assert "停工" in mine["terms"] and mine["sends"][0]["state"] == "sent"
    assert TestClient(app).get("/monitor/bursts", headers=people["neighbour"].headers).json() == []


def test_no_rule_burst_before_the_monitor_has_a_history(
    people: dict[str, Person], feeds: Feeds, settings: MonitorSettings
) -> None:
    city = people["city"]
    with session_scope() as s:
        rule = services.add_rule(s, city.principal, name="欠薪", query_text="欠薪", organization=CITY).id
        source = services.add_source(s, city.principal, url=feeds.url("weibo/keyword/x"), organization=CITY).id
    feeds.call("burst", route="weibo/keyword/x", title="电子厂停工", count=8, text="某电子厂停工，工人讨要欠薪。")
    poll_source(source, settings=settings)
    with session_scope() as s:
        keys = {b.key for b in bursts.detect(s, settings)}
    assert f"rule:{rule}" not in keys  # a monitor started this hour has no baseline for its rules yet


def _org(source_id: int) -> int:
    with session_scope() as s:
        return s.get(Source, source_id).organization_id
