"""The monitor's API routes and CLI commands, as signed-in people: strict bodies, one-line 4xx errors."""

from __future__ import annotations

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from monitor.pipeline import poll_source
from monitor.settings import MonitorSettings
from publisher.interfaces.api import app
from publisher.interfaces.cli import app as cli_app
from tests.monitor.conftest import Feeds
from tests.support.people import CITY, Person


def test_api_sources_rules_items_stories(people: dict[str, Person], feeds: Feeds, settings: MonitorSettings) -> None:
    client = TestClient(app)
    h = people["city"].headers
    r = client.post("/monitor/sources", json={"url": feeds.url("api/feed"), "organization": CITY}, headers=h)
    assert r.status_code == 201, r.text
    source_id = r.json()["id"]
    r = client.post("/monitor/rules", json={"name": "欠薪", "query": "欠薪 OR 拖欠", "organization": CITY}, headers=h)
    assert r.status_code == 201, r.text
    feeds.call("items", route="api/feed", items=[{"title": "欠薪", "text": "某厂拖欠工资"}])
    poll_source(source_id, settings=settings)
    items = client.get("/monitor/items", params={"rule": r.json()["id"]}, headers=h).json()
    assert [i["title"] for i in items] == ["欠薪"] and "wages" in items[0]["needs"]
    stories = client.get("/monitor/stories", headers=h).json()
    assert stories[0]["sources"] == 1
    assert client.get(f"/monitor/stories/{stories[0]['id']}", headers=h).json()["items"][0]["title"] == "欠薪"
    # errors: one line each
    bad = client.post("/monitor/rules", json={"name": "x", "query": "(欠薪", "organization": CITY}, headers=h)
    assert bad.status_code == 422 and bad.json()["detail"] == "query: a parenthesis is not closed"
    extra = client.post("/monitor/sources", json={"url": "https://e.org/f", "oops": 1}, headers=h)
    assert extra.status_code == 422 and "unknown field 'oops'" in extra.json()["detail"]
    editor = client.post("/monitor/sources", json={"url": "https://e.org/f"}, headers=people["editor"].headers)
    assert editor.status_code == 403 and "monitor" in editor.json()["detail"]
    assert client.get(f"/monitor/sources/{source_id}", headers=people["neighbour"].headers).status_code == 404
    assert client.get("/monitor/sources").status_code == 401


def test_cli_source_add_list_pause_and_rules(people: dict[str, Person], feeds: Feeds, monkeypatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("MATRIX_TOKEN", people["city"].token)
    done = runner.invoke(cli_app, ["monitor", "source", "add", feeds.url("cli/f"), "--org", CITY, "--tag", "weibo"])
    assert done.exit_code == 0 and "source 1 added" in done.output, done.output
    done = runner.invoke(cli_app, ["monitor", "source", "list", "--json"])
    assert done.exit_code == 0 and '"weibo"' in done.output
    assert runner.invoke(cli_app, ["monitor", "source", "pause", "1"]).exit_code == 0
    done = runner.invoke(cli_app, ["monitor", "rules", "add", "欠薪", "欠薪 NEAR/5 工人", "--org", CITY])
    assert done.exit_code == 0 and "rule 1 added" in done.output
    assert "NEAR/5" in runner.invoke(cli_app, ["monitor", "rules", "list"]).output
    bad = runner.invoke(cli_app, ["monitor", "rules", "add", "x", "NOT 广告", "--org", CITY])
    assert bad.exit_code == 2 and "must be present" in bad.output
    paused = runner.invoke(cli_app, ["monitor", "poll", "1"])
    assert paused.exit_code == 2 and "paused" in paused.output
    monkeypatch.setenv("MATRIX_TOKEN", people["editor"].token)
    assert runner.invoke(cli_app, ["monitor", "source", "list"]).exit_code == 2
