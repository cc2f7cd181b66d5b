"""Contract tables of the adapters' ``comments``: WordPress ``wp/v2/comments``, Weibo ``comments/show`` and WeChat
``comment/list``, each against its sandbox over real HTTP, with its cursor, paging and one fault or more.

Comments are added through each sandbox's ``POST <prefix>/_sandbox/comments``; a case's call publishes a post,
adds comments, reads them and checks what came back and what the cursor makes of the next read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from channels.base import AccountInfo, Channel, CommentBatch, DeliveryContext, make_client
from channels.errors import InvalidRequest, NeedsReauth, QuotaExhausted, RateLimited, Unavailable
from channels.sandbox.server import RunningServer
from channels.sandbox.wordpress import DEMO_PASSWORD
from channels.website import WebsiteChannel
from channels.wechat import WeChatChannel
from channels.weibo import Weibo
from tests.support.contract import ContractCase, SandboxControl, make_ctx, run_case
from tests.support.wechat import factory as wechat_factory

WEIBO_TOKEN, WEIBO_UID = "demo-weibo-token-1", "5000000001"


class NoWait:
    """The adapters' limiter without the waiting (the service injects the real one)."""

    def acquire(self, key: str, per_second: float, burst: int = 1) -> None:
        return None


def add_comments(sb: SandboxControl, **body: Any) -> list[dict[str, Any]]:
    response = sb.http.post("/comments", json=body)
    response.raise_for_status()
    return response.json()


def texts(batch: CommentBatch) -> list[str]:
    return [c.text for c in batch.comments]


# ------------------------------------------------------------------------------------------ WordPress


def wp_post(ch: Channel) -> DeliveryContext:
    ctx = make_ctx()
    result = ch.publish(ctx)
    ctx.remote_id, ctx.remote_url = result.remote_id, result.url
    return ctx


def _wp_read_and_resume(ch: Channel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    ctx = wp_post(ch)
    add_comments(sb, site="demo", post=int(ctx.remote_id or 0), count=130)  # two pages of 100
    first = ch.comments(ctx)
    assert len(first.comments) == 130 and len({c.guid for c in first.comments}) == 130
    assert first.comments[0].text.startswith("我们工地三个月没发工资了")  # oldest first
    assert first.comments[0].author == "建筑工老李" and first.comments[0].created_at is not None
    assert first.comments[0].guid == f"website:1:comment:{first.comments[0].id}"
    assert f"?p={ctx.remote_id}#comment-" in first.comments[0].link
    assert ch.comments(ctx, first.cursor).comments == []  # nothing new: nothing again (same second included)
    add_comments(sb, site="demo", post=int(ctx.remote_id or 0), comments=[{"text": "加班不给钱", "author": "甲"}])
    again = ch.comments(ctx, first.cursor)
    return texts(again) == ["加班不给钱"] and again.cursor["after"] >= first.cursor["after"]


def _wp_limit_then_rest(ch: Channel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    ctx = wp_post(ch)
    add_comments(sb, site="demo", post=int(ctx.remote_id or 0), count=5)
    first = ch.comments(ctx, limit=3)
    rest = ch.comments(ctx, first.cursor)
    return (
        len(first.comments) == 3
        and len(rest.comments) == 2
        and not {c.id for c in first.comments} & {c.id for c in rest.comments}
    )


def _wp_fault_after_publish(**fault: Any):
    def call(ch: Channel, sb: SandboxControl | None) -> Any:
        assert sb is not None
        ctx = wp_post(ch)
        sb.faults(path="wp/v2/comments", **fault)
        return ch.comments(ctx)

    return call


WP_CASES: list[ContractCase] = [
    ContractCase("wp: 130 comments in two pages, cursor resumes", None, _wp_read_and_resume, lambda ok, sb: ok),
    ContractCase("wp: limit leaves the rest for the next read", None, _wp_limit_then_rest, lambda ok, sb: ok),
    ContractCase(
        "wp: no post id, no call",
        None,
        lambda ch, sb: ch.comments(make_ctx()),
        lambda batch, sb: batch.comments == [] and batch.cursor == {},
    ),
    ContractCase("wp: 503 from the proxy is transient", None, _wp_fault_after_publish(status=503), Unavailable),
    ContractCase("wp: 429 is rate limited", None, _wp_fault_after_publish(status=429, retry_after=7), RateLimited),
    ContractCase("wp: 401 needs reauth", None, _wp_fault_after_publish(status=401), NeedsReauth),
]


@pytest.fixture(scope="module")
def wp(sandbox_server: RunningServer) -> Iterator[SandboxControl]:
    control = SandboxControl(sandbox_server.url, "/wp")
    yield control
    control.close()


def wp_factory(sandbox: SandboxControl):
    account = AccountInfo(
        id=1,
        kind="website",
        name="示范单位官网",
        credentials={"username": "editor", "app_password": DEMO_PASSWORD},
        config={"base_url": f"{sandbox.url}/demo"},
    )

    def factory(transport: httpx.BaseTransport | None) -> Channel:
        client = make_client(WebsiteChannel.base_url(account), transport=transport) if transport else None
        return WebsiteChannel(account, client)

    return factory


@pytest.mark.parametrize("case", WP_CASES, ids=str)
def test_website_comments(case: ContractCase, wp: SandboxControl) -> None:
    run_case(wp_factory(wp), case, wp)


# ---------------------------------------------------------------------------------------------- Weibo


def weibo_status(ch: Channel, sb: SandboxControl) -> DeliveryContext:
    root = sb.url.rsplit("/weibo", 1)[0]
    ctx = make_ctx(depends_on_url=f"{root}/wp/demo/?p=1")
    result = ch.publish(ctx)
    ctx.remote_id, ctx.remote_url = result.remote_id, result.url
    return ctx


def _weibo_read_and_resume(ch: Channel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    ctx = weibo_status(ch, sb)
    added = add_comments(sb, id=ctx.remote_id, count=3)
    first = ch.comments(ctx)
    assert {c.guid for c in first.comments} == {f"weibo:comment:{a['id']}" for a in added}
    newest = max(first.comments, key=lambda c: int(c.id))
    assert newest.author == "纺织厂女工" and "社保" in newest.text and newest.created_at is not None
    assert newest.link.endswith(f"/{WEIBO_UID}/{ctx.remote_id}")
    assert first.cursor == {"since_id": max(a["id"] for a in added)}
    add_comments(sb, id=ctx.remote_id, comments=[{"text": "支持", "author": "乙"}])
    return texts(ch.comments(ctx, first.cursor)) == ["支持"]


def _weibo_gap_is_filled(ch: Channel, sb: SandboxControl | None) -> bool:
    """Newest first, cut at 2 of 5: the 3 older come next, then only what is new."""
    assert sb is not None
    ctx = weibo_status(ch, sb)
    added = add_comments(sb, id=ctx.remote_id, count=5)
    first = ch.comments(ctx, limit=2)
    assert [int(c.id) for c in first.comments] == sorted((a["id"] for a in added), reverse=True)[:2]
    assert "gap" in first.cursor
    add_comments(sb, id=ctx.remote_id, comments=[{"text": "又一条", "author": "丙"}])
    second = ch.comments(ctx, first.cursor)
    assert sorted(int(c.id) for c in second.comments) == sorted(a["id"] for a in added)[:3]
    assert second.cursor == {"since_id": max(a["id"] for a in added)}
    return texts(ch.comments(ctx, second.cursor)) == ["又一条"]


def _weibo_deleted_status(ch: Channel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    ctx = weibo_status(ch, sb)
    ch.retract(ctx)
    batch = ch.comments(ctx, {"since_id": 5})
    return batch.gone and batch.comments == [] and batch.cursor == {"since_id": 5}


def _weibo_fault(**fault: Any):
    def call(ch: Channel, sb: SandboxControl | None) -> Any:
        assert sb is not None
        ctx = weibo_status(ch, sb)
        sb.faults(path="/2/comments/show.json", **fault)
        return ch.comments(ctx)

    return call


def _weibo_revoked(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    ctx = weibo_status(ch, sb)
    sb.http.post("/tokens/revoke", json={"uid": WEIBO_UID}).raise_for_status()
    return ch.comments(ctx)


WEIBO_CASES: list[ContractCase] = [
    ContractCase("weibo: read, then only what is new", None, _weibo_read_and_resume, lambda ok, sb: ok),
    ContractCase("weibo: a read cut short is filled next", None, _weibo_gap_is_filled, lambda ok, sb: ok),
    ContractCase("weibo: 20101 deleted status ends it gone", None, _weibo_deleted_status, lambda ok, sb: ok),
    ContractCase(
        "weibo: 10023 user rate limit", None, _weibo_fault(status=403, error_code=10023), RateLimited, code=10023
    ),
    ContractCase(
        "weibo: 10001 system error is transient",
        None,
        _weibo_fault(status=500, error_code=10001),
        Unavailable,
        code=10001,
    ),
    ContractCase("weibo: 21332 revoked token needs reauth", None, _weibo_revoked, NeedsReauth, code=21332),
]


@pytest.fixture(scope="module")
def weibo(sandbox_server: RunningServer) -> Iterator[SandboxControl]:
    control = SandboxControl(sandbox_server.url, "/weibo")
    yield control
    control.close()


def weibo_factory(sandbox: SandboxControl):
    account = AccountInfo(
        id=21,
        kind="weibo",
        name="示范微博",
        credentials={"access_token": WEIBO_TOKEN, "uid": WEIBO_UID},
        config={"base_url": sandbox.url, "safe_domain": "127.0.0.1", "rip": "127.0.0.1"},
    )

    def factory(transport: httpx.BaseTransport | None) -> Channel:
        client = make_client(Weibo.base_url(account), transport=transport) if transport else None
        return Weibo(account, client, limiter=NoWait())

    return factory


@pytest.mark.parametrize("case", WEIBO_CASES, ids=str)
def test_weibo_comments(case: ContractCase, weibo: SandboxControl) -> None:
    run_case(weibo_factory(weibo), case, weibo)


# --------------------------------------------------------------------------------------------- WeChat


def wechat_article(ch: Channel, sb: SandboxControl) -> DeliveryContext:
    ctx = make_ctx()
    ch.publish(ctx)
    sb.advance(60)  # past the asynchronous publishing
    assert ch.status(ctx).state == "published"
    return ctx


def _wechat_read_and_resume(ch: Channel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    ctx = wechat_article(ch, sb)
    msg = ctx.progress["msg_data_id"]
    added = add_comments(sb, msg_data_id=msg, index=0, count=60)  # two pages of 50
    first = ch.comments(ctx)
    assert len(first.comments) == 60 and first.cursor == {"begin": 60, "max_id": 60}
    one = first.comments[2]
    assert one.guid == f"wechat:comment:{msg}_1:3" and "社保" in one.text
    assert one.author.startswith("读者") and added[2]["openid"] not in one.author  # a digest, never the openid
    assert one.link == ctx.progress["article_url"] and one.created_at is not None
    assert ch.comments(ctx, first.cursor).comments == []
    add_comments(sb, msg_data_id=msg, index=0, comments=[{"text": "工伤怎么认定？", "author": "丁"}])
    return texts(ch.comments(ctx, first.cursor)) == ["工伤怎么认定？"]


def _wechat_deleted_article(ch: Channel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    ctx = wechat_article(ch, sb)
    ch.retract(ctx)
    batch = ch.comments(ctx, {"begin": 3, "max_id": 3})
    return batch.gone and batch.cursor == {"begin": 3, "max_id": 3}


def _wechat_closed_comments(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    account = replace(ch.account, config={**ch.account.config, "need_open_comment": 0})
    closed = WeChatChannel(account, ch.client, limiter=ch.limiter, token_cache=ch.token_cache)
    return closed.comments(wechat_article(closed, sb))


def _wechat_fault(**fault: Any):
    def call(ch: Channel, sb: SandboxControl | None) -> Any:
        assert sb is not None
        ctx = wechat_article(ch, sb)
        sb.faults(path="comment/list", **fault)
        return ch.comments(ctx)

    return call


WECHAT_CASES: list[ContractCase] = [
    ContractCase("wechat: 60 comments in two pages, cursor resumes", None, _wechat_read_and_resume, lambda ok, sb: ok),
    ContractCase("wechat: 88001 deleted article ends it gone", None, _wechat_deleted_article, lambda ok, sb: ok),
    ContractCase("wechat: 88000 comments not open", None, _wechat_closed_comments, InvalidRequest, code=88000),
    ContractCase("wechat: 45009 daily quota", None, _wechat_fault(errcode=45009), QuotaExhausted, code=45009),
    ContractCase("wechat: -1 busy is transient", None, _wechat_fault(errcode=-1), Unavailable, code=-1),
]


@pytest.mark.parametrize("case", WECHAT_CASES, ids=str)
def test_wechat_comments(case: ContractCase, wx: SandboxControl, wx_server: RunningServer) -> None:
    run_case(wechat_factory(wx_server), case, wx)
