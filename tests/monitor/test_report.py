"""The daily report: the read model on a few stored items (the organisation's subtree, one local day against the
7 before), its HTML page and PDF through the API and the CLI, and a schedule that sends once to a robot of the
robot sandbox and once by e-mail to the SMTP sink."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, time, timedelta
from itertools import count

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from core import ratelimit
from core.clock import local_date, now
from core.db import engine_for, session_scope
from core.errors import Forbidden, InvalidInput
from core.settings import get_settings
from monitor import alert_channels, report, report_schedule, services
from monitor.models import Alert, Burst, Item, ReportSend, Rule, Sighting, Story
from monitor.settings import MonitorSettings, reset_monitor_settings
from monitor.smtp_sandbox import SmtpSink
from publisher.interfaces.api import app
from publisher.interfaces.cli import app as cli_app
from tests.monitor.conftest import Robots
from tests.support.people import CITY, DISTRICT, NEIGHBOUR, Person

_keys = count()


def _font_or_none() -> str | None:
    try:
        return report.find_font(MonitorSettings())[0]
    except report.ReportFontMissing:
        return None


needs_font = pytest.mark.skipif(_font_or_none() is None, reason="no CJK font here (install fonts-noto-cjk)")


def _at(day, hour: int) -> datetime:
    """A local hour of ``day`` as the aware UTC instant it is stored as."""
    return datetime.combine(day, time(hour), get_settings().tz).astimezone(UTC)


def _item(s, sources: list[int], at: datetime, title: str, neg: float, *, story: Story | None = None,
          needs: tuple[str, ...] = ()) -> Item:  # fmt: skip
    """One item as the pipeline would have stored it, sighted by ``sources`` (the first carried it first)."""
    if story is None:
        story = Story(title=title, item_count=0, first_seen_at=at, last_seen_at=at)
        s.add(story)
        s.flush()
    story.item_count += 1
    key = hashlib.sha256(f"{title}{next(_keys)}".encode()).hexdigest()
    item = Item(story_id=story.id, source_id=sources[0], link_hash="", title=title, text=title, fetched_at=at,
                content_hash=key, negativity=neg, scores={"needs": {n: [] for n in needs}})  # fmt: skip
    s.add(item)
    s.flush()
    for source_id in sources:
        s.add(Sighting(item_id=item.id, source_id=source_id, entry_key=key[:40] + str(source_id), seen_at=at))
    return item


def _stored(people: dict[str, Person]):
    """Yesterday: a story two sources (city, district) carry, two items; a second story; the neighbour's item.
    Three days before: one calm item. Yesterday also has one alert of a city rule and one burst."""
    day = local_date(now()) - timedelta(days=1)
    with session_scope() as s:
        city = services.add_source(s, people["city"].principal, url="https://feeds.example/city", organization=CITY)
        district = services.add_source(
            s, people["city"].principal, url="https://feeds.example/district", organization=DISTRICT
        )
        other = services.add_source(
            s, people["neighbour"].principal, url="https://feeds.example/nb", organization=NEIGHBOUR
        )
        first = _item(s, [city.id, district.id], _at(day, 9), "某厂拖欠工资三个月", 0.8, needs=("wages",))
        story = s.get(Story, first.story_id)
        _item(s, [district.id], _at(day, 10), "转发：某厂拖欠工资三个月", 0.6, story=story, needs=("wages",))
        _item(s, [city.id], _at(day, 23), "技能大赛开幕", 0.1, needs=("training_jobs",))
        _item(s, [other.id], _at(day, 12), "邻市工地欠薪", 0.9, needs=("wages",))
        _item(s, [city.id], _at(day - timedelta(days=3), 9), "职工运动会", 0.0)
        rule = services.add_rule(s, people["city"].principal, name="欠薪", query_text="欠薪 OR 拖欠", organization=CITY)
        s.add(Alert(rule_id=rule.id, story_id=story.id, item_id=first.id, window_start=_at(day, 9),
                    message="m", created_at=_at(day, 9)))  # fmt: skip
        s.add(Burst(key=f"rule:{rule.id}", hour_start=_at(day, 10), organization_id=rule.organization_id,
                    rule_id=rule.id, count=7, baseline=1.0, zscore=6.0, terms=["停工"], message="突发"))  # fmt: skip
        assert s.scalar(select(func.count()).select_from(Rule)) == 1
    return day


def test_the_read_model_counts_the_subtree_on_the_day_against_the_week_before(people: dict[str, Person]) -> None:
    day = _stored(people)
    with session_scope() as s:
        r = report.daily_report(s, people["city"].principal, organization=CITY, day=day)
        district = report.daily_report(s, people["city"].principal, organization=DISTRICT, day=day)
        with pytest.raises(Forbidden):
            report.daily_report(s, people["neighbour"].principal, organization=CITY, day=day)
        with pytest.raises(InvalidInput, match="has not come yet"):
            report.daily_report(s, people["city"].principal, organization=CITY, day=day + timedelta(days=2))
    assert r["volume"] == {"items": 3, "stories": 2, "sources": 2}  # the neighbour's item is not the city's
    assert r["negativity"]["negative"] == 2 and r["negativity"]["share"] == round(2 / 3, 4)
    assert r["negativity"]["mean"] == 0.5 and r["negativity"]["before"] == {
        "items": 1, "negative": 0, "share": 0.0, "mean": 0.0}  # fmt: skip
    assert [d["items"] for d in r["volume_by_day"]] == [0, 0, 0, 0, 1, 0, 0, 3]
    assert [(t["title"], t["sources"], t["items"]) for t in r["top_stories"]] == [
        ("某厂拖欠工资三个月", 2, 2), ("技能大赛开幕", 1, 1)]  # fmt: skip
    wages = next(n for n in r["needs"] if n["key"] == "wages")
    assert wages["count"] == 2 and wages["before_mean"] == 0 and not wages["rising"]  # 2 is under the radar's 3
    assert [a["rule"] for a in r["alerts"]["rows"]] == ["欠薪"] and r["bursts"]["rows"][0]["terms"] == ["停工"]
    assert district["volume"] == {"items": 2, "stories": 1, "sources": 1}  # the story its own source carried
    assert report.parse_day(None) is None
    with pytest.raises(InvalidInput, match="YYYY-MM-DD"):
        report.parse_day("2026-13-01")


def test_html_json_and_pdf_through_the_api_and_the_cli(people: dict[str, Person], tmp_path, monkeypatch) -> None:
    day = _stored(people).isoformat()
    client = TestClient(app)
    h = people["city"].headers
    data = client.get("/monitor/report", params={"org": CITY, "day": day}, headers=h).json()
    assert data["volume"]["items"] == 3
    page = client.get("/monitor/report.html", params={"org": CITY, "day": day}, headers=h)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<div class="figure" id="items"><b>3</b>' in page.text and "66.7%" in page.text
    assert "某厂拖欠工资三个月" in page.text and "停工" in page.text
    assert "<script" not in page.text and "http" not in page.text.split("<body>")[0]  # nothing fetched from outside
    bad = client.get("/monitor/report", params={"org": CITY, "day": "yesterday"}, headers=h)
    assert bad.status_code == 422 and bad.json()["detail"] == "a day is YYYY-MM-DD, not 'yesterday'"
    assert client.get("/monitor/report", params={"org": "无此组织"}, headers=h).status_code == 404
    assert (
        client.get("/monitor/report.html", params={"org": CITY}, headers=people["neighbour"].headers).status_code == 403
    )
    # no font configured where one is asked for: a one-line 409 for the PDF, the HTML still works
    monkeypatch.setenv("MATRIX_MONITOR_REPORT_FONT", str(tmp_path / "none.ttf"))
    reset_monitor_settings()
    nofont = client.get("/monitor/report.pdf", params={"org": CITY, "day": day}, headers=h)
    assert nofont.status_code == 409 and "no font file at" in nofont.json()["detail"]
    monkeypatch.setenv("MATRIX_TOKEN", people["city"].token)
    runner = CliRunner()
    done = runner.invoke(cli_app, ["monitor", "report", "--org", CITY, "--day", day, "--pdf", str(tmp_path / "r.pdf")])
    assert done.exit_code == 2 and "no font file at" in done.output and not (tmp_path / "r.pdf").exists()
    monkeypatch.delenv("MATRIX_MONITOR_REPORT_FONT")
    reset_monitor_settings()
    done = runner.invoke(cli_app, ["monitor", "report", "--org", CITY, "--day", day])
    assert done.exit_code == 0 and "66.7%" in done.output and "某厂拖欠工资三个月" in done.output, done.output
    done = runner.invoke(cli_app, ["monitor", "report", "--org", CITY, "--day", "12/01", "--html", "x.html"])
    assert done.exit_code == 2 and "YYYY-MM-DD" in done.output
    done = runner.invoke(
        cli_app, ["monitor", "report", "--org", CITY, "--day", day, "--html", str(tmp_path / "r.html")]
    )
    assert done.exit_code == 0 and "<b>3</b>" in (tmp_path / "r.html").read_text()


@needs_font
def test_the_pdf_is_a_pdf(people: dict[str, Person]) -> None:
    day = _stored(people).isoformat()
    pdf = TestClient(app).get("/monitor/report.pdf", params={"org": CITY, "day": day}, headers=people["city"].headers)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and len(pdf.content) > 2000


def test_a_schedule_sends_each_day_once_to_a_robot_and_by_e_mail(
    people: dict[str, Person], robots: Robots, smtp_sink: SmtpSink, settings: MonitorSettings, monkeypatch
) -> None:
    day = _stored(people)
    city = people["city"].principal
    with session_scope() as s:
        robot = alert_channels.add_channel(s, city, organization=CITY, kind="wecom", name="企微",
                                           webhook=robots.add("wecom", "daily")).id  # fmt: skip
        mail = alert_channels.add_channel(
            s, city, organization=CITY, kind="email", name="邮箱", smtp_host="127.0.0.1", smtp_port=smtp_sink.port,
            smtp_security="none", smtp_username="alerts", smtp_password="smtp-pass-of-test",
            mail_from="monitor@union.example", mail_to=["duty@union.example"],
        ).id  # fmt: skip
        with pytest.raises(InvalidInput, match="through an e-mail channel"):
            report_schedule.set_schedule(s, city, at="08:00", organization=CITY, channels=[robot], emails=["a@b.cn"])
        with pytest.raises(InvalidInput, match="HH:MM"):
            report_schedule.set_schedule(s, city, at="8点", organization=CITY, channels=[robot])
        # two minutes ahead: its whole minute is still to come when the next line asks (one minute ahead, its
        # start could be a millisecond away)
        at = (now() + timedelta(minutes=2)).astimezone(get_settings().tz)
        report_schedule.set_schedule(s, city, at=at.strftime("%H:%M"), organization=CITY, channels=[robot, mail])
    with session_scope() as s:
        assert report_schedule.queue_due(s, now()) == []  # not yet its time
    later = now() + timedelta(minutes=3)
    with session_scope() as s:
        due = report_schedule.queue_due(s, later)
    with session_scope() as s:
        assert report_schedule.queue_due(s, later + timedelta(minutes=5)) == due  # the same sends, none added
        sends = {x.target: x for x in s.scalars(select(ReportSend))}
    assert set(sends) == {f"channel:{robot}", f"channel:{mail}"} and len(due) == 2
    covered = at.date() - timedelta(days=1)  # the day before the send's own day (``later`` may be past midnight)
    assert {x.day for x in sends.values()} == {covered.isoformat()}
    limiter = ratelimit.SqlLimiter(engine_for(get_settings().database_url))
    for send_id in due:
        assert report_schedule.deliver_report(send_id, settings=settings, limiter=limiter) == "sent"
        assert report_schedule.deliver_report(send_id, settings=settings, limiter=limiter) == "skipped"
    (message,) = robots.messages("wecom", "daily")["accepted"]
    assert "【舆情日报】市总工会" in message["content"] and "/monitor/report.html?org=" in message["content"]
    (email,) = smtp_sink.messages
    assert email["Subject"] == f"舆情日报：市总工会 {covered.isoformat()}"
    html = email.get_body(("html",)).get_content()
    assert "舆情日报" in html and (covered != day or "<b>3</b>" in html)
    attachments = [p.get_filename() for p in email.iter_attachments()]
    assert attachments == ([f"report-{covered.isoformat()}.pdf"] if _font_or_none() else [])
    assert all(p.get_content().startswith(b"%PDF-") for p in email.iter_attachments())
    with session_scope() as s:
        (row,) = report_schedule.schedule_rows(s, city)
    assert sorted(x["state"] for x in row["sends"]) == ["sent", "sent"]
    monkeypatch.setenv("MATRIX_TOKEN", people["city"].token)
    runner = CliRunner()
    done = runner.invoke(cli_app, ["monitor", "report", "schedule", "list"], env={"COLUMNS": "200"})
    assert done.exit_code == 0 and "市总工会" in done.output and "sent" in done.output, done.output
    done = runner.invoke(cli_app, ["monitor", "report", "schedule", "set", "25:00", "--org", CITY, "--channel", "1"])
    assert done.exit_code == 2 and "HH:MM" in done.output
