"""The Toutiao console sandbox's behaviour: review on the fake clock, sessions, daily quota, envelopes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from channels.base import AccountInfo, DeliveryContext, PostContent
from channels.errors import NeedsReauth, QuotaExhausted
from channels.sandbox.server import RunningServer, serve_in_thread
from channels.sandbox.toutiao import create_app
from channels.toutiao import Toutiao
from tests.support.contract import NoWait, make_ctx

SESSION = {"Cookie": "sessionid=demo-toutiao-session-1"}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = serve_in_thread(create_app())
    yield running
    running.stop()


@pytest.fixture
def sandbox(server: RunningServer) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=server.url, timeout=10.0)
    client.post("/_sandbox/reset").raise_for_status()
    yield client
    client.close()


def advance(sandbox: httpx.Client, seconds: float) -> float:
    response = sandbox.post("/_sandbox/clock/advance", json={"seconds": seconds})
    response.raise_for_status()
    return response.json()["now"]


def channel(server: RunningServer, sessionid: str = "demo-toutiao-session-1") -> Toutiao:
    account = AccountInfo(
        id=8,
        kind="toutiao",
        name="测试头条号",
        credentials={"sessionid": sessionid, "expires_at": "2099-01-01T00:00:00Z"},
        config={"base_url": server.url},
    )
    return Toutiao(account, limiter=NoWait())


def article(n: int = 0) -> DeliveryContext:
    return make_ctx(PostContent(title=f"第{n}篇测试文章的标题", body=f"正文 {n}。\n\n第二段。"))


def register(sandbox: httpx.Client, **account: Any) -> None:
    sandbox.post("/_sandbox/accounts", json=account).raise_for_status()


def test_review_then_published_page_and_engagement(server: RunningServer, sandbox: httpx.Client) -> None:
    ch = channel(server)
    ctx = article()
    ctx.remote_id = ch.publish(ctx).remote_id
    assert ch.status(ctx).state == "pending"
    page = ch.article_url(ctx.remote_id)
    assert httpx.get(page).status_code == 404  # not visible during review
    assert ch.metrics([ctx])[ctx.delivery_id].reads == 0
    advance(sandbox, 61)
    status = ch.status(ctx)
    assert status.state == "published" and status.url == page
    shown = httpx.get(page)
    assert shown.status_code == 200 and "第0篇测试文章的标题" in shown.text
    advance(sandbox, 1800)
    later = ch.metrics([ctx])[ctx.delivery_id]
    assert later.reads > 0 and later.likes is not None and later.comments is not None
    ch.close()


def test_session_expires_on_the_fake_clock(server: RunningServer, sandbox: httpx.Client) -> None:
    register(sandbox, sessionid="short", expires_in=600)
    ch = channel(server, "short")
    ch.check_credentials()
    advance(sandbox, 601)
    with pytest.raises(NeedsReauth) as dead:
        ch.publish(article())
    assert dead.value.code == 1001
    ch.close()


def test_daily_quota_resets_at_midnight_shanghai(server: RunningServer, sandbox: httpx.Client) -> None:
    register(sandbox, sessionid="quota", daily_limit=2)
    ch = channel(server, "quota")
    ch.publish(article(1))
    ch.publish(article(2))
    with pytest.raises(QuotaExhausted) as spent:
        ch.publish(article(3))
    assert spent.value.code == 7052 and spent.value.paused_until is not None
    clock = sandbox.get("/_sandbox/clock").json()["now"]
    now = datetime.fromtimestamp(clock, UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    advance(sandbox, (midnight - now).total_seconds() + 1)
    assert ch.publish(article(3)).state == "awaiting_confirmation"
    ch.close()


def test_errors_are_http_200_with_a_body_code(server: RunningServer, sandbox: httpx.Client) -> None:
    no_session = sandbox.post("/mp/agw/article/publish", data={"title": "一篇文章的标题", "content": "<p>x</p>"})
    assert no_session.status_code == 200 and no_session.json()["err_no"] == 1001
    info = sandbox.get("/mp/agw/media/get_media_info", headers={"Cookie": "sessionid=nope"})
    assert info.status_code == 200 and info.json()["code"] == 1001
    short = sandbox.post(
        "/mp/agw/article/publish",
        data={"title": "短", "content": "<p>x</p>"},
        headers=SESSION,
    )
    assert short.json()["err_no"] == 7050


def test_outside_images_must_be_uploaded_first(server: RunningServer, sandbox: httpx.Client) -> None:
    form = {"title": "一篇带外链图片的文章", "content": '<p><img src="https://img.example.cn/a.png"></p>'}
    refused = sandbox.post("/mp/agw/article/publish", data=form, headers=SESSION).json()
    assert refused["err_no"] == 7050 and "图片" in refused["message"]
    not_an_image = sandbox.post(
        "/spice/image", files={"image": ("a.png", b"<html>", "image/png")}, headers=SESSION
    ).json()
    assert not_an_image["code"] == 7020


def test_list_pages_newest_first(server: RunningServer, sandbox: httpx.Client) -> None:
    ch = channel(server)
    ids = [ch.publish(article(n)).remote_id for n in range(3)]
    first = sandbox.get("/mp/agw/article/list", params={"size": 2, "page": 1}, headers=SESSION).json()["data"]
    second = sandbox.get("/mp/agw/article/list", params={"size": 2, "page": 2}, headers=SESSION).json()["data"]
    assert [a["pgc_id"] for a in first["list"] + second["list"]] == ids[::-1]
    assert first["has_more"] is True and second["has_more"] is False and first["total"] == 3
    ch.close()


def test_lookup_by_title_and_time_where_the_list_has_no_title_id(server: RunningServer) -> None:
    """The real console's list may not echo title_id: lookup falls back to title + creation time."""
    created = datetime.now(UTC).timestamp()

    def console(request: httpx.Request) -> httpx.Response:
        item = {"pgc_id": "7309", "title": "第5篇测试文章的标题", "status": 1, "create_time": int(created)}
        return httpx.Response(200, json={"err_no": 0, "data": {"list": [item], "has_more": False}})

    account = AccountInfo(8, "toutiao", "t", {"sessionid": "s"}, {"base_url": "https://mp.toutiao.com"})
    ch = Toutiao(
        account,
        httpx.Client(base_url=Toutiao.base_url(account), transport=httpx.MockTransport(console)),
        limiter=NoWait(),
    )
    ours = article(5)
    ours.progress.update(title="第5篇测试文章的标题", attempted_at=created - 2, title_id="1_2")
    found = ch.lookup(ours)
    assert found is not None and found.remote_id == "7309" and found.url == "https://www.toutiao.com/item/7309/"
    stale = article(5)
    stale.progress.update(title="第5篇测试文章的标题", attempted_at=created + 3600)  # a later attempt
    assert ch.lookup(stale) is None
    ch.close()


@pytest.mark.parametrize(
    ("status", "expected"),
    [(1, "published"), ("已发布", "published"), ("2", "failed"), ("已删除", "retracted"), ("审核中", "pending"),
     ("something new", "pending")],
)  # fmt: skip
def test_status_words_of_the_console(status: Any, expected: str) -> None:
    """The list's state may come as a number or a word; an unknown one is polled again, never guessed."""

    def console(request: httpx.Request) -> httpx.Response:
        item = {"pgc_id": "42", "title": "t", "status": status, "reason": "原因"}
        return httpx.Response(200, json={"err_no": 0, "data": {"list": [item], "has_more": False}})

    account = AccountInfo(8, "toutiao", "t", {"sessionid": "s"}, {})
    client = httpx.Client(base_url=Toutiao.base_url(account), transport=httpx.MockTransport(console))
    ch = Toutiao(account, client, limiter=NoWait())
    assert ch.status(make_ctx(remote_id="42")).state == expected
    ch.close()
