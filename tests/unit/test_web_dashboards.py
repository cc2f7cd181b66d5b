"""The dashboards without a browser: the calendar's events and clashes, engagement summed per day from the
snapshot history, the top posts, the matrix ranking's order and index values, the CSV exports (UTF-8 with a BOM)
and the scope: a neighbouring city's people see none of the city's numbers."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.clock import now
from core.db import session_scope
from core.settings import get_settings
from publisher import services
from publisher.domain.models import Delivery, MetricSnapshot, Post, Schedule
from publisher.interfaces.api import app
from tests.support.people import CITY, NEIGHBOUR, SYSTEM, Person, make_user, password_of


@pytest.fixture()
def people(env: Path, rules_only: None) -> dict[str, Person]:
    return {
        "editor": make_user("editor", ("editor", CITY)),
        "neighbour": make_user("neighbour", ("editor", NEIGHBOUR)),
    }


@pytest.fixture()
def accounts(people: dict[str, Person]) -> dict[str, int]:
    with session_scope() as s:
        made = {
            "city_a": services.add_account(
                s, SYSTEM, kind="manual", name="市总甲号", credentials={}, organization=CITY
            ),
            "city_b": services.add_account(
                s, SYSTEM, kind="manual", name="市总乙号", credentials={}, organization=CITY
            ),
            "far": services.add_account(
                s, SYSTEM, kind="manual", name="邻市号", credentials={}, organization=NEIGHBOUR
            ),
        }
        s.flush()
        return {k: a.id for k, a in made.items()}


@pytest.fixture()
def client(people: dict[str, Person]) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def sign_in(client: TestClient, person: Person) -> None:
    client.cookies.clear()
    r = client.post(
        "/login",
        data={"name": person.principal.name, "password": password_of(person.principal.name), "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303


def local_midnight() -> datetime:
    """Today's local midnight, as aware UTC."""
    today = now().astimezone(get_settings().tz).date()
    return datetime(today.year, today.month, today.day, tzinfo=get_settings().tz).astimezone(UTC)


def make_post(person: Person, account: int, title: str, state: str = "approved") -> int:
    with session_scope() as s:
        post = services.create_post(s, person.principal, title=title, body="工会开展职工技能培训。", accounts=[account])
        s.flush()
        post.state = state
        return post.id


def schedule(post_id: int, at: datetime) -> None:
    with session_scope() as s:
        s.get(Post, post_id).state = "scheduled"
        s.add(Schedule(post_id=post_id, due_at=at))


def publish(post_id: int, account: int, at: datetime, *snapshots: tuple[datetime, int, int, int, int]) -> int:
    """A published delivery of the post with snapshots (taken_at, reads, likes, shares, comments), in order."""
    with session_scope() as s:
        post = s.get(Post, post_id)
        post.state = "published"
        d = Delivery(post_id=post_id, version_id=post.current_version_id, account_id=account, state="published",
                     published_at=at, due_at=at)  # fmt: skip
        s.add(d)
        s.flush()
        for taken, reads, likes, shares, comments in snapshots:
            s.add(MetricSnapshot(delivery_id=d.id, taken_at=taken, reads=reads, likes=likes, shares=shares,
                                 comments=comments))  # fmt: skip
            s.flush()
        return d.id


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def test_calendar_events_mark_two_posts_to_one_account_within_an_hour(client: TestClient, people, accounts) -> None:
    editor = people["editor"]
    base = local_midnight() + timedelta(days=2, hours=9)
    first = make_post(editor, accounts["city_a"], "上午通知")
    second = make_post(editor, accounts["city_a"], "上午快讯")
    alone = make_post(editor, accounts["city_b"], "下午通知")
    later = make_post(editor, accounts["city_a"], "晚间通知")
    schedule(first, base)
    schedule(second, base + timedelta(minutes=40))
    schedule(alone, base + timedelta(minutes=10))  # another account: no clash
    schedule(later, base + timedelta(hours=3))
    done = make_post(editor, accounts["city_b"], "昨日发布")
    publish(done, accounts["city_b"], base - timedelta(days=1))
    far = make_post(people["neighbour"], accounts["far"], "邻市通知")
    schedule(far, base)

    with session_scope() as s:
        events = services.calendar_events(s, editor.principal, base - timedelta(days=3), base + timedelta(days=3))
    by_post = {e["post_id"]: e for e in events}
    assert set(by_post) == {first, second, alone, later, done}  # not the neighbour's
    assert by_post[first]["clash"] and by_post[second]["clash"]
    assert not by_post[alone]["clash"] and not by_post[later]["clash"]
    assert by_post[done]["kind"] == "published" and by_post[first]["kind"] == "scheduled"
    assert by_post[first]["channel"] == "manual" and by_post[first]["account"] == "市总甲号"

    sign_in(client, editor)
    tz = get_settings().tz
    start = (base - timedelta(days=3)).astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S")
    end = (base + timedelta(days=3)).astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S")
    feed = client.get("/ui/calendar/events", params={"start": start, "end": end, "state": "scheduled"}).json()
    assert {e["extendedProps"]["post_id"] for e in feed} == {first, second, alone, later}
    clashing = [e for e in feed if "ev-clash" in e["classNames"]]
    assert {e["extendedProps"]["post_id"] for e in clashing} == {first, second}
    assert all(e["editable"] for e in feed)
    assert feed[0]["start"] == base.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S")
    published = client.get("/ui/calendar/events", params={"start": start, "end": end, "state": "published"}).json()
    assert [e["editable"] for e in published] == [False]
    assert client.get("/ui/calendar/events", params={"start": end, "end": start}).status_code == 422
    page = client.get("/ui/calendar")
    assert page.status_code == 200 and "/static/vendor/event-calendar-5.10.1/event-calendar.min.js" in page.text
    assert "/static/dashboards.js" in page.text

    sign_in(client, people["neighbour"])
    theirs = client.get("/ui/calendar/events", params={"start": start, "end": end}).json()
    assert {e["extendedProps"]["post_id"] for e in theirs} == {far}


def test_engagement_sums_each_deliverys_latest_snapshot_per_day(client: TestClient, people, accounts) -> None:
    editor = people["editor"]
    today, yesterday = local_midnight(), local_midnight() - timedelta(days=1)
    one = make_post(editor, accounts["city_a"], "一号稿")
    two = make_post(editor, accounts["city_b"], "二号稿")
    publish(
        one,
        accounts["city_a"],
        yesterday,
        (yesterday + timedelta(hours=1), 4, 1, 0, 0),
        (today + timedelta(minutes=30), 10, 2, 1, 0),
        (today + timedelta(minutes=50), 30, 5, 2, 1),  # the day's latest of this delivery
    )
    publish(two, accounts["city_b"], today, (today + timedelta(minutes=20), 5, 1, 1, 1))
    far = make_post(people["neighbour"], accounts["far"], "邻市稿")
    publish(far, accounts["far"], today, (today + timedelta(minutes=5), 1000, 100, 10, 1))

    with session_scope() as s:
        series = services.engagement_series(s, editor.principal, days=7)
        only_one = services.engagement_series(s, editor.principal, post_id=one, days=2)
        far_series = services.engagement_series(s, people["neighbour"].principal, days=2)
        top = services.top_posts(s, editor.principal, days=7)
    assert len(series) == 7 and series[-1]["day"] == now().astimezone(get_settings().tz).date().isoformat()
    assert series[-1] == {"day": series[-1]["day"], "reads": 35, "likes": 6, "shares": 3, "comments": 2}
    assert series[-2]["reads"] == 4 and series[0]["reads"] == 0
    assert [d["reads"] for d in only_one] == [4, 30]
    assert [d["reads"] for d in far_series] == [0, 1000]  # the neighbour sees their own, not the city's
    assert [(p["post_id"], p["reads"]) for p in top] == [(one, 30), (two, 5)]

    sign_in(client, editor)
    page = client.get("/ui/dashboard?days=7")
    assert page.status_code == 200 and 'id="engagement-chart"' in page.text and "一号稿" in page.text
    assert "邻市稿" not in page.text and "/static/vendor/echarts-6.1.0/echarts.min.js" in page.text
    assert client.get("/ui/dashboard?days=abc").status_code == 422
    r = client.get("/ui/dashboard/top.csv?days=7&channel=manual&organization=")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = read_csv(r.content)
    assert rows[0] == ["post_id", "title", "organization", "deliveries", "reads", "likes", "shares", "comments"]
    assert rows[1] == [str(one), "一号稿", CITY, "1", "30", "5", "2", "1"]
    assert len(rows) == 3

    sign_in(client, people["neighbour"])
    theirs = read_csv(client.get("/ui/dashboard/top.csv?days=7").content)
    assert [r[1] for r in theirs[1:]] == ["邻市稿"]


def expected_index(n: int, reads: int, likes: int, shares: int, comments: int) -> float:
    return round(
        100
        * (
            0.15 * math.log(1 + n)
            + 0.40 * math.log(1 + reads)
            + 0.20 * math.log(1 + likes)
            + 0.15 * math.log(1 + shares)
            + 0.10 * math.log(1 + comments)
        ),
        2,
    )


def test_the_ranking_orders_by_the_index_and_exports_it(client: TestClient, people, accounts) -> None:
    editor = people["editor"]
    today = local_midnight()
    for i in range(2):
        p = make_post(editor, accounts["city_b"], f"乙号稿{i}")
        publish(p, accounts["city_b"], today, (today + timedelta(minutes=1), 100, 10, 5, 2))
    p = make_post(editor, accounts["city_a"], "甲号稿")
    publish(p, accounts["city_a"], today, (today + timedelta(minutes=1), 50, 1, 0, 0))
    old = make_post(editor, accounts["city_a"], "旧稿")  # outside the window: not counted
    publish(old, accounts["city_a"], today - timedelta(days=60), (today - timedelta(days=59), 10**6, 0, 0, 0))
    far = make_post(people["neighbour"], accounts["far"], "邻市稿")
    publish(far, accounts["far"], today, (today + timedelta(minutes=1), 10**5, 10, 1, 1))

    with session_scope() as s:
        ranking = services.matrix_ranking(s, editor.principal, days=30)
        system = services.matrix_ranking(s, SYSTEM, days=30)
    accts = ranking["accounts"]
    assert [r["account"] for r in accts] == ["市总乙号", "市总甲号"]
    assert accts[0]["posts"] == 2 and accts[0]["reads"] == 200 and accts[0]["rank"] == 1
    assert accts[0]["index"] == expected_index(2, 200, 20, 10, 4)
    assert accts[1]["index"] == expected_index(1, 50, 1, 0, 0)
    assert [r["organization"] for r in ranking["organizations"]] == [CITY]
    assert ranking["organizations"][0]["index"] == expected_index(3, 250, 21, 10, 4)
    assert ranking["organizations"][0]["accounts"] == 2
    assert [r["organization"] for r in system["organizations"]] == [NEIGHBOUR, CITY]
    assert services.matrix_index(0, 0, 0, 0, 0) == 0

    sign_in(client, editor)
    page = client.get("/ui/ranking")
    assert page.status_code == 200 and 'data-testid="index-definition"' in page.text and "WCI" in page.text
    assert "邻市号" not in page.text
    rows = read_csv(client.get("/ui/ranking.csv").content)
    assert rows[0][:3] == ["level", "rank", "name"] and rows[0][-1] == "index"
    assert [r[2] for r in rows[1:]] == ["市总乙号", "市总甲号", CITY]
    assert float(rows[1][-1]) == expected_index(2, 200, 20, 10, 4)

    sign_in(client, people["neighbour"])
    theirs = read_csv(client.get("/ui/ranking.csv").content)
    assert [r[2] for r in theirs[1:]] == ["邻市号", NEIGHBOUR]
    assert "市总乙号" not in client.get("/ui/ranking?lang=en").text


def test_the_dashboard_pages_render_for_the_anonymous_as_a_sign_in(client: TestClient, people) -> None:
    for page in ("/ui/calendar", "/ui/dashboard", "/ui/ranking", "/ui/ranking.csv", "/ui/dashboard/top.csv"):
        r = client.get(page, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), page
    sign_in(client, people["editor"])
    for page in ("/ui/calendar", "/ui/dashboard", "/ui/ranking"):
        html = client.get(page + "?lang=en").text
        assert 'href="/ui/ranking"' in html and "Sign out" in html
