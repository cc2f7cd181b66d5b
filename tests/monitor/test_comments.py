"""Comments on our own published posts as a monitor source (:mod:`monitor.comments`).

In process, on SQLite, against the platform sandboxes over real sockets: Weibo and WeChat posts of the city's
accounts (their delivery rows written as the publisher leaves them), comments added in the sandboxes, polls of
the comments source: each comment stored once with its post and account, scored (needs, negativity), matched by
a rule and alerted; a second poll stores nothing again; a deleted post is not asked again; a dead token fails the
poll with its reason. The interfaces' checks (who may add one, for which account). Then one scenario through the
real worker and beat: a post published on the WordPress sandbox by the workers, its comments polled by the
monitor's task.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from channels.sandbox.server import RunningServer
from core.clock import now
from core.db import session_scope
from core.settings import reset_settings
from monitor import services
from monitor.models import Alert, CommentCursor, Item, RuleHit, Sighting, Source
from monitor.pipeline import poll_source
from monitor.radar import needs_radar
from monitor.settings import MonitorSettings
from publisher import services as publisher
from publisher.domain.models import Account, Delivery, Post, PostVersion
from publisher.interfaces.api import app
from publisher.interfaces.cli import app as cli_app
from publisher.services.channels import account_info, make_channel
from tests.support.people import CITY, NEIGHBOUR, Person, password_of
from tests.support.stack import UNION, Stack

WEIBO_TOKEN, WEIBO_UID = "demo-weibo-token-1", "5000000001"
WECHAT_APPID, WECHAT_SECRET = "wx5a1db0x0000demo1", "sandbox-secret-demo-1"


@pytest.fixture()
def platforms(env: Path, sandbox_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    """The platform sandboxes reachable from this installation (``{sandbox}`` in accounts' config), reset."""
    monkeypatch.setenv("MATRIX_SANDBOX_HOST", sandbox_server.host)
    monkeypatch.setenv("MATRIX_SANDBOX_PORT", str(sandbox_server.port))
    monkeypatch.setenv("MATRIX_OUTBOUND_ALLOW", f"{sandbox_server.host}:{sandbox_server.port}")
    reset_settings()
    for prefix in ("/wp", "/weibo", "/wechat"):
        httpx.post(f"{sandbox_server.url}{prefix}/_sandbox/reset", timeout=10).raise_for_status()
    return sandbox_server


def control(server: RunningServer, prefix: str, path: str, **body: Any) -> Any:
    r = httpx.post(f"{server.url}{prefix}/_sandbox/{path}", json=body, timeout=10)
    r.raise_for_status()
    return r.json()


def account(kind: str, name: str, credentials: dict[str, Any], config: dict[str, Any], org: str = CITY) -> int:
    with session_scope() as s:
        made = publisher.add_account(
            s, publisher.SYSTEM, kind=kind, name=name, credentials=credentials, config=config, organization=org
        )
        s.flush()
        return made.id


def published(account_id: int, title: str, progress: dict[str, Any], remote_id: str, url: str | None) -> int:
    """A post and its published delivery on ``account_id``, as the publisher leaves them; the delivery's id."""
    with session_scope() as s:
        acct = s.get(Account, account_id)
        post = Post(organization_id=acct.organization_id, state="published")
        s.add(post)
        s.flush()
        version = PostVersion(post_id=post.id, number=1, title=title, body="正文", content_hash="0" * 64)
        s.add(version)
        s.flush()
        post.current_version_id = version.id
        delivery = Delivery(
            post_id=post.id, version_id=version.id, account_id=account_id, state="published", remote_id=remote_id,
            remote_url=url, progress=progress, published_at=now(),
        )  # fmt: skip
        s.add(delivery)
        s.flush()
        return delivery.id


def publish_with_adapter(account_id: int, link: str | None = None) -> tuple[str, str | None, dict[str, Any]]:
    """Publish a post on the account's sandbox with its own adapter: remote id, URL and the saved progress."""
    from channels.base import DeliveryContext, PostContent

    with session_scope() as s:
        info = account_info(s.get(Account, account_id))
    channel = make_channel(info)
    try:
        ctx = DeliveryContext(
            delivery_id=10_000 + account_id, idempotency_key=f"mm-{10_000 + account_id}",
            content=PostContent(title="职工技能大赛开幕", body="本届职工技能大赛共有12个工种。"), depends_on_url=link,
        )  # fmt: skip
        result = channel.publish(ctx)
        if result.state == "awaiting_confirmation":  # WeChat: past its asynchronous publishing
            httpx.post(f"{info.config['base_url']}/_sandbox/clock/advance", json={"seconds": 60}, timeout=10)
            status = channel.status(ctx)
            assert status.state == "published", status
            return result.remote_id, status.url, ctx.progress
        return result.remote_id, result.url, ctx.progress
    finally:
        channel.close()


@pytest.fixture()
def fast() -> MonitorSettings:
    return MonitorSettings(timeout_s=5, deadline_s=5, host_spacing_s=0, pause_after=3)


def items_of(source_id: int) -> list[Item]:
    with session_scope() as s:
        ids = select(Sighting.item_id).where(Sighting.source_id == source_id)
        rows = list(s.scalars(select(Item).where(Item.id.in_(ids)).order_by(Item.id)))
        s.expunge_all()
        return rows


def test_weibo_and_wechat_comments_are_stored_once_scored_and_alerted(
    people: dict[str, Person], platforms: RunningServer, fast: MonitorSettings
) -> None:
    city = people["city"].principal
    root = platforms.url
    weibo = account("weibo", "市总微博", {"access_token": WEIBO_TOKEN, "uid": WEIBO_UID},
                    {"base_url": "{sandbox}/weibo", "safe_domain": "{sandbox}", "rip": "127.0.0.1"})  # fmt: skip
    wechat = account("wechat", "市总公众号", {"appid": WECHAT_APPID, "secret": WECHAT_SECRET},
                     {"base_url": "{sandbox}/wechat", "source_url": "{sandbox}/"})  # fmt: skip
    status_id, status_url, weibo_progress = publish_with_adapter(weibo, link=f"{root}/wp/demo/?p=1")
    weibo_delivery = published(weibo, "职工技能大赛开幕", weibo_progress, status_id, status_url)
    article_id, article_url, wechat_progress = publish_with_adapter(wechat)
    wechat_delivery = published(wechat, "送温暖活动", wechat_progress, article_id, article_url)
    control(platforms, "/weibo", "comments", id=status_id, comments=[
        {"author": "建筑工老李", "text": "我们工地三个月没发工资了，工会能不能帮忙讨薪？"},
        {"author": "快递小哥", "text": "每天干到晚十点，加班费一分没有，太气人了，简直是压榨！"},
        {"author": "热心读者", "text": "活动办得很好，支持！"},
        {"author": "另一位读者", "text": "活动办得很好，支持！"},  # the same words: still a comment of its own
    ])  # fmt: skip
    control(platforms, "/wechat", "comments", msg_data_id=wechat_progress["msg_data_id"], index=0,
            comments=[{"author": "纺织厂女工", "text": "公司一直没给我们交社保，这合法吗？"}])  # fmt: skip
    with session_scope() as s:
        source_id = services.add_comments_source(s, city, organization=CITY).id
        rule_id = services.add_rule(s, city, name="讨薪", query_text="讨薪 OR 欠薪 OR 社保", organization=CITY).id
    first = poll_source(source_id, settings=fast)
    assert first.status == "new" and first.new_items == 5 and first.error == "", first
    stored = items_of(source_id)
    by_text = {i.text: i for i in stored}
    wages = by_text["我们工地三个月没发工资了，工会能不能帮忙讨薪？"]
    assert "wages" in wages.scores["needs"] and wages.author == "建筑工老李" and wages.title == ""
    assert (wages.delivery_id, wages.account_id) == (weibo_delivery, weibo)
    angry = by_text["每天干到晚十点，加班费一分没有，太气人了，简直是压榨！"]
    assert "hours" in angry.scores["needs"]
    insurance = by_text["公司一直没给我们交社保，这合法吗？"]
    assert "insurance" in insurance.scores["needs"] and insurance.delivery_id == wechat_delivery
    assert insurance.author.startswith("读者") and insurance.link == article_url
    assert len([i for i in stored if i.text == "活动办得很好，支持！"]) == 2
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(RuleHit).where(RuleHit.rule_id == rule_id)) == 2
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.rule_id == rule_id)) == 2
        row = services.item_row(s, s.get(Item, wages.id))
        assert row["comment_of"] == {
            "delivery_id": weibo_delivery, "post_id": row["comment_of"]["post_id"], "post_title": "职工技能大赛开幕",
            "post_url": status_url, "account_id": weibo, "account": "市总微博", "platform": "weibo",
        }  # fmt: skip
        radar = needs_radar(s, city, days=3)
        by_account = {a["name"]: a["needs"] for a in radar["accounts"]}
        assert by_account["市总微博"]["wages"] == 1 and by_account["市总公众号"]["insurance"] == 1
        assert services.source_row(s, s.get(Source, source_id))["kind"] == "comments"

    web = TestClient(app)
    r = web.post("/login", data={"name": "city-monitor", "password": password_of("city-monitor")},
                 follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    stream = web.get("/ui/monitor", params={"need": "wages"}).text
    assert (
        f'data-testid="comment-of-{wages.id}"' in stream and "市总微博" in stream and "《职工技能大赛开幕》" in stream
    )
    assert 'data-testid="needs-by-account"' in web.get("/ui/monitor/needs").text

    again = poll_source(source_id, settings=fast)  # nothing new: nothing stored, nothing alerted again
    assert again.status == "new" and again.new_items == 0 and again.rule_hits == 0, again
    assert len(items_of(source_id)) == 5
    control(platforms, "/weibo", "comments", id=status_id, comments=[{"author": "甲", "text": "厂里欠薪半年了"}])
    third = poll_source(source_id, settings=fast)
    assert third.new_items == 1 and third.rule_hits == 1, third
    assert len(items_of(source_id)) == 6

    # the status is deleted on Weibo: its cursor is gone and not asked again; WeChat's still is
    httpx.post(f"{root}/weibo/2/statuses/destroy.json", data={"access_token": WEIBO_TOKEN, "id": status_id},
               timeout=10).raise_for_status()  # fmt: skip
    poll_source(source_id, settings=fast)
    with session_scope() as s:
        states = dict(s.execute(select(CommentCursor.delivery_id, CommentCursor.state)).all())
        assert states == {weibo_delivery: "gone", wechat_delivery: "active"}
        counts = dict(s.execute(select(CommentCursor.delivery_id, CommentCursor.comments)).all())
        assert counts == {weibo_delivery: 5, wechat_delivery: 1}


def test_a_dead_token_fails_the_poll_with_its_reason(
    people: dict[str, Person], platforms: RunningServer, fast: MonitorSettings
) -> None:
    city = people["city"].principal
    weibo = account("weibo", "市总微博", {"access_token": WEIBO_TOKEN, "uid": WEIBO_UID},
                    {"base_url": "{sandbox}/weibo", "safe_domain": "{sandbox}", "rip": "127.0.0.1"})  # fmt: skip
    status_id, url, progress = publish_with_adapter(weibo, link=f"{platforms.url}/wp/demo/?p=1")
    published(weibo, "通知", progress, status_id, url)
    control(platforms, "/weibo", "tokens/revoke", uid=WEIBO_UID)
    with session_scope() as s:
        source_id = services.add_comments_source(s, city, account=weibo).id
    outcome = poll_source(source_id, settings=fast)
    assert outcome.status == "failed" and "21332" in outcome.error and "市总微博" in outcome.error, outcome
    with session_scope() as s:
        source = s.get(Source, source_id)
        assert source.failures == 1 and source.next_poll_at > now()


def test_who_may_add_a_comments_source(people: dict[str, Person], platforms: RunningServer, monkeypatch) -> None:
    neighbours = account("weibo", "邻市微博", {"access_token": "t", "uid": "1"}, {}, org=NEIGHBOUR)
    mine = account("weibo", "市总微博", {"access_token": "t", "uid": "2"}, {})
    client = TestClient(app)
    h = people["city"].headers
    r = client.post("/monitor/sources/comments", json={"account_id": mine, "tags": ["评论"]}, headers=h)
    assert r.status_code == 201 and r.json()["kind"] == "comments" and r.json()["account"]["id"] == mine, r.text
    again = client.post("/monitor/sources/comments", json={"account_id": mine}, headers=h)
    assert again.status_code == 409 and "already has a comments source" in again.json()["detail"]
    # the neighbour's account is not the city monitor's to read, nor to know of
    foreign = client.post("/monitor/sources/comments", json={"account_id": neighbours}, headers=h)
    assert foreign.status_code == 404 and f"account {neighbours} not found" in foreign.json()["detail"]
    prov = people["province"].headers  # the province monitor sees the city's account, but it is not the province's
    other = client.post(
        "/monitor/sources/comments", json={"account_id": mine, "organization": "省总工会"}, headers=prov
    )
    assert other.status_code == 422 and "is not an account of 省总工会" in other.json()["detail"]
    editor = client.post("/monitor/sources/comments", json={"organization": CITY}, headers=people["editor"].headers)
    assert editor.status_code == 403
    cursors = client.get(f"/monitor/sources/{r.json()['id']}/cursors", headers=h)
    assert cursors.status_code == 200 and cursors.json() == []

    runner = CliRunner()
    monkeypatch.setenv("MATRIX_TOKEN", people["city"].token)
    done = runner.invoke(cli_app, ["monitor", "source", "add", "--comments", "--org", CITY])
    assert done.exit_code == 0 and "市总工会 的评论" in done.output, done.output
    listed = runner.invoke(cli_app, ["monitor", "source", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "comments (weibo" in listed.output, listed.output
    both = runner.invoke(cli_app, ["monitor", "source", "add", "https://e.org/f", "--comments"])
    assert both.exit_code == 2 and "takes no URL" in both.output
    neither = runner.invoke(cli_app, ["monitor", "source", "add"])
    assert neither.exit_code == 2 and "give the feed's URL" in neither.output


# ------------------------------------------------------------------------------------- through the workers


@pytest.fixture(scope="module")
def comment_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = {"MATRIX_MONITOR_POLL_INTERVAL_S": "1", "MATRIX_MONITOR_HOST_SPACING_S": "0"}
    stack = Stack("embedded", tmp_path_factory.mktemp("comments-stack"), extra_env=extra)
    stack.start()
    yield stack
    stack.stop()


@pytest.mark.timeout(240)
def test_comments_polled_through_the_monitor_task(comment_stack: Stack) -> None:
    """Published by the workers on the WordPress sandbox; its comments polled by beat's ``monitor.poll_due`` and
    the ``monitor.poll_source`` task: scored, matched, alerted; polled again, nothing stored twice."""
    from core.notify import Notification
    from tests.support.people import make_user

    stack = comment_stack
    site = stack.website_account("comments")
    post_id = stack.publish([site], title="关于开展送温暖活动的通知", body="各基层工会：请做好困难职工帮扶。")

    def live() -> Any:
        deliveries = stack.post(post_id)["deliveries"]
        return bool(deliveries) and deliveries[0]["state"] == "published" and deliveries[0]

    delivery = stack.wait_for(live, timeout=90, what="the post published on the website")
    wp_post = stack.wp_posts("comments")[0]
    stack.sandbox_call("POST", "/wp/_sandbox/comments", json={"site": "comments", "post": wp_post["id"], "comments": [
        {"author": "建筑工老李", "text": "我们工地三个月没发工资了，工会能不能帮忙讨薪？"},
        {"author": "机修工王师傅", "text": "去年在车间被机器压伤了手，工伤认定到现在还没下来，厂里也不管。"},
        {"author": "车间主任", "text": "已转发到班组群，大家踊跃参加。"},
    ]})  # fmt: skip
    monitor = make_user("comment-monitor", ("monitor", UNION))
    with session_scope() as s:
        rule_id = services.add_rule(s, monitor.principal, name="讨薪", query_text="讨薪 OR 欠薪", organization=UNION).id
        source_id = services.add_comments_source(s, monitor.principal, organization=UNION).id

    def polled(times: int) -> Any:
        def check() -> Any:
            with session_scope() as s:
                source = s.get(Source, source_id)
                return source.fetch_count >= times and source.claimed_until is None and source

        return check

    stack.wait_for(polled(1), timeout=60, what="the comments source polled by the worker")
    stored = items_of(source_id)
    assert sorted(i.author for i in stored) == ["建筑工老李", "机修工王师傅", "车间主任"]
    by_author = {i.author: i for i in stored}
    assert "wages" in by_author["建筑工老李"].scores["needs"]
    assert "injury_safety" in by_author["机修工王师傅"].scores["needs"]
    assert all(i.delivery_id == delivery["id"] and i.post_id == post_id for i in stored)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.rule_id == rule_id)) == 1
        assert s.scalar(select(func.count()).select_from(Notification).where(Notification.kind == "monitor.alert")) == 1
        services.poll_now(s, monitor.principal, [source_id])
    stack.wait_for(polled(2), timeout=60, what="the comments source polled again")
    assert len(items_of(source_id)) == 3  # the second poll stored nothing twice
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(RuleHit).where(RuleHit.rule_id == rule_id)) == 1
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.rule_id == rule_id)) == 1
