"""The monitor's pages (issue 13 item 10, issue 11): the live stream with its filters, a story, the needs
radar and the alert log, as a signed-in monitor — server-rendered (JavaScript off works), items' HTML sanitised,
a feed's ``javascript:`` link never a link, another city's monitor seeing none of it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from core.db import session_scope
from monitor.pipeline import poll_source
from monitor.radar import needs_radar
from monitor.settings import MonitorSettings
from publisher.interfaces.api import app
from tests.monitor.conftest import Feeds
from tests.support.people import CITY, Person, password_of


def _sign_in(client: TestClient, name: str) -> None:
    client.cookies.clear()
    r = client.post("/login", data={"name": name, "password": password_of(name)}, follow_redirects=False)
    assert r.status_code == 303


def test_stream_story_needs_and_alerts_pages(
    people: dict[str, Person], feeds: Feeds, settings: MonitorSettings
) -> None:
    client = TestClient(app)
    h = people["city"].headers
    source = client.post("/monitor/sources", json={"url": feeds.url("web/feed"), "organization": CITY}, headers=h)
    assert source.status_code == 201, source.text
    rule = client.post(
        "/monitor/rules", json={"name": "欠薪", "query": "欠薪 OR 拖欠", "organization": CITY}, headers=h
    )
    feeds.call(
        "items",
        route="web/feed",
        items=[
            {"title": "某厂拖欠工资三个月", "text": "工人反映某厂拖欠工资，至今未发<script>alert(1)</script>"},
            {"title": "加班太多", "text": "每天加班到深夜，没有加班费", "link": "javascript:alert(2)"},
            {"title": "技能大赛", "text": "市总工会举办职工技能大赛"},
        ],
    )
    poll_source(source.json()["id"], settings=settings)
    _sign_in(client, "city-monitor")

    stream = client.get("/ui/monitor")
    assert stream.status_code == 200
    assert "某厂拖欠工资三个月" in stream.text and "技能大赛" in stream.text
    assert "<script>alert(1)" not in stream.text  # sanitised when stored, shown as such
    assert 'href="javascript:' not in stream.text
    assert 'hx-trigger="every 30s"' in stream.text  # the list refreshes itself
    wages = client.get("/ui/monitor", params={"need": "wages"}).text
    assert "某厂拖欠工资三个月" in wages and "技能大赛" not in wages
    by_rule = client.get("/ui/monitor", params={"rule": rule.json()["id"]}).text
    assert "某厂拖欠工资三个月" in by_rule and "加班太多" not in by_rule
    partial = client.get("/ui/monitor", headers={"HX-Request": "true"}).text
    assert partial.startswith('<div id="stream"') and "<html" not in partial
    bad = client.get("/ui/monitor", params={"need": "nonsense"})
    assert bad.status_code == 422 and "unknown need" in bad.text

    stories = client.get("/ui/monitor/stories").text
    story_id = client.get("/monitor/stories", headers=h).json()[0]["id"]
    assert f"/ui/monitor/stories/{story_id}" in stories
    assert client.get(f"/ui/monitor/stories/{story_id}").status_code == 200

    needs = client.get("/ui/monitor/needs")
    assert needs.status_code == 200 and 'data-testid="need-wages"' in needs.text and 'id="needs-data"' in needs.text
    with session_scope() as s:
        data = needs_radar(s, people["city"].principal, days=7)
    totals = {n["key"]: n["total"] for n in data["needs"]}
    assert totals["wages"] == totals["hours"] == totals["training_jobs"] == 1 and sum(totals.values()) == 3, totals
    assert data["organizations"][0]["name"] == CITY and data["organizations"][0]["needs"]["wages"] == 1
    assert len(data["days"]) == 7 and data["needs"][0]["counts"][-1] >= 0
    alerts = client.get("/ui/monitor/alerts")
    assert alerts.status_code == 200 and "欠薪" in alerts.text  # the rule alerted once for its story

    _sign_in(client, "nb-monitor")
    assert "某厂拖欠工资三个月" not in client.get("/ui/monitor").text
    assert client.get(f"/ui/monitor/stories/{story_id}").status_code == 404
    _sign_in(client, "city-editor")
    assert client.get("/ui/monitor").status_code == 403
