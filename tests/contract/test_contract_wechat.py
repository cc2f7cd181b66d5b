"""Contract table of the WeChat adapter: sandbox state or a recorded reply → outcome or exception.

Covers every error code of channel-apis.md's WeChat section and every code in ``WeChatChannel.ERROR_MAP``
(the meta-test reads ``case.code``). Most rows drive the sandbox (real validation, quotas, tokens); rows
with ``transport`` replay a reply recorded in WeChat's own words through ``httpx.MockTransport``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from channels.base import PostContent
from channels.errors import (
    ContentRejected,
    InvalidRequest,
    NeedsReauth,
    OutcomeUnknown,
    QuotaExhausted,
    RateLimited,
    Unavailable,
)
from channels.sandbox.server import RunningServer
from channels.tokens import MemoryTokenCache
from channels.wechat import TokenRejected, WeChatChannel
from tests.support.contract import ContractCase, SandboxControl, make_ctx, run_case
from tests.support.wechat import PNG, app_state, factory, settings

SHANGHAI = ZoneInfo("Asia/Shanghai")


def fault(**knobs: Any) -> Callable[[SandboxControl | None], None]:
    def setup(sb: SandboxControl | None) -> None:
        assert sb is not None
        sb.faults(**knobs)

    return setup


def knobs(**values: Any) -> Callable[[SandboxControl | None], None]:
    def setup(sb: SandboxControl | None) -> None:
        assert sb is not None
        settings(sb, **values)

    return setup


def publish(ch: WeChatChannel, sb: SandboxControl | None) -> Any:
    return ch.publish(make_ctx())


def published_ctx(ch: WeChatChannel, sb: SandboxControl | None, **kw: Any):
    """Publish and let the sandbox's clock run past the asynchronous publishing."""
    assert sb is not None
    ctx = make_ctx(**kw)
    ch.publish(ctx)
    sb.advance(60)
    assert ch.status(ctx).state == "published"
    return ctx


def recorded(path: str, reply: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    """A MockTransport handler: a token for stable_token, ``reply`` (as WeChat sent it) for ``path``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/cgi-bin/stable_token"):
            return httpx.Response(200, json={"access_token": "ACCESS_TOKEN", "expires_in": 7200})
        if request.url.path.endswith(path):
            return httpx.Response(200, content=json.dumps(reply, ensure_ascii=False).encode())
        return httpx.Response(200, json={"media_id": "MEDIA_ID", "url": "http://mmbiz.qpic.cn/x"})

    return handler


def next_midnight_utc(now: float) -> datetime:
    local = datetime.fromtimestamp(now, SHANGHAI)
    return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), SHANGHAI).astimezone(UTC)


def _quota_paused_until_is_next_shanghai_midnight(ch: WeChatChannel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    sb.advance(3 * 3600)  # the sandbox's clock differs from ours: the pause must follow the platform's
    now = sb.http.get("/clock").json()["now"]
    with pytest.raises(QuotaExhausted) as info:
        ch.publish(make_ctx())
    expected = next_midnight_utc(now)
    assert info.value.code == 45009
    assert abs((info.value.paused_until - expected).total_seconds()) < 1, (info.value.paused_until, expected)
    assert info.value.paused_until.utcoffset() == timedelta(0)
    return True


def _token_refreshed_once(result: Any, sb: SandboxControl | None) -> bool:
    assert sb is not None
    calls = app_state(sb)["token_calls"]
    # one token for the first call; one refresh after the rejection (non-forced call first, then forced
    # because the platform still handed out the rejected token)
    return result.state == "awaiting_confirmation" and calls["forced"] == 1


def _expired_token_refreshed(ch: WeChatChannel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    ch.check_credentials()  # leaves a token in the shared cache
    before = app_state(sb)["token_calls"]["stable_token"]
    sb.advance(7300)  # past the 2 h lifetime: the platform answers 42001
    result = ch.publish(make_ctx())
    calls = app_state(sb)["token_calls"]
    return result.state == "awaiting_confirmation" and calls["stable_token"] == before + 1 and calls["forced"] == 0


def _wrong_secret_with_a_cached_token(ch: WeChatChannel, sb: SandboxControl | None) -> None:
    """A credential check must ask the platform with the credentials given, not reuse a cached token."""
    assert _server is not None
    cache = MemoryTokenCache()
    factory(_server, cache=cache)(None).check_credentials()  # the right secret fills the shared cache
    factory(_server, cache=cache, secret="wrong")(None).check_credentials()


def _status_after(outcome: int, state: str) -> Callable[[WeChatChannel, SandboxControl | None], bool]:
    def call(ch: WeChatChannel, sb: SandboxControl | None) -> bool:
        assert sb is not None
        settings(sb, publish_outcome=outcome, settle_s=10)
        ctx = make_ctx()
        ch.publish(ctx)
        assert ch.status(ctx).state == "pending"
        sb.advance(11)
        result = ch.status(ctx)
        return result.state == state and bool(result.reason)

    return call


def _banned(ch: WeChatChannel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    ctx = published_ctx(ch, sb)
    sb.http.post(f"/articles/{ctx.progress['article_id']}/ban").raise_for_status()
    result = ch.status(ctx)
    page = httpx.get(ctx.progress["article_url"]).text
    return result.state == "retracted" and "封禁" in (result.reason or "") and "违规" in page


def _retract_gone_article(ch: WeChatChannel, sb: SandboxControl | None) -> bool:
    ctx = make_ctx(progress={"article_id": "art_does_not_exist", "idx": 1})
    ch.retract(ctx)  # 53600 means gone: success
    return True


def _retract_twice(ch: WeChatChannel, sb: SandboxControl | None) -> bool:
    ctx = published_ctx(ch, sb)
    ch.retract(ctx)
    ch.retract(ctx)
    page = httpx.get(ctx.progress["article_url"]).text
    return ch.status(ctx).state == "retracted" and "删除" in page


def _body_image_behind(hops: int) -> Callable[[WeChatChannel, SandboxControl | None], Any]:
    def call(ch: WeChatChannel, sb: SandboxControl | None) -> Any:
        assert _server is not None
        ctx = make_ctx(PostContent(title="图", body=f"![x]({_server.url}/files/hop{hops}.png)"))
        result = ch.publish(ctx)
        return result, ctx

    return call


def _inline_cover(payload: str) -> Callable[[WeChatChannel, SandboxControl | None], Any]:
    def call(ch: WeChatChannel, sb: SandboxControl | None) -> Any:
        ctx = make_ctx(PostContent(title="内嵌封面", body="正文", cover_url=f"data:image/png;base64,{payload}"))
        return ch.publish(ctx), ctx

    return call


def _too_many_redirects(ch: WeChatChannel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    with pytest.raises(InvalidRequest, match="redirects more than 3 times"):
        _body_image_behind(4)(ch, sb)
    return "draft/add" not in app_state(sb)["calls"]


def _metrics_t_plus_one(ch: WeChatChannel, sb: SandboxControl | None) -> bool:
    assert sb is not None
    ctx = published_ctx(ch, sb)
    assert ch.metrics([ctx]) == {}  # published today: datacube answers 61501 until the day is over
    sb.advance(86400)
    first = ch.metrics([ctx])[ctx.delivery_id]
    sb.advance(86400)
    second = ch.metrics([ctx])[ctx.delivery_id]
    return first.reads is not None and 0 < first.reads < second.reads and second.likes is not None


CASES: list[ContractCase] = [
    # -- happy paths ---------------------------------------------------------------------------------
    ContractCase(
        "publish: draft added and submitted, ids saved",
        None,
        lambda ch, sb: (lambda ctx: (ch.publish(ctx), ctx))(make_ctx()),
        lambda res, sb: res[0].state == "awaiting_confirmation"
        and res[0].remote_id == res[1].progress["publish_id"]
        and {"thumb_media_id", "media_id", "publish_id", "msg_data_id"} <= set(res[1].progress),
    ),
    ContractCase("status 0: published with article_url", None, lambda ch, sb: published_ctx(ch, sb),
                 lambda ctx, sb: ctx.progress["article_url"].startswith("http") and ctx.progress["article_id"]),
    ContractCase("status 2: originality check failed", None, _status_after(2, "failed"), lambda ok, sb: ok),
    ContractCase("status 3: general failure", None, _status_after(3, "failed"), lambda ok, sb: ok),
    ContractCase("status 4: rejected by review", None, _status_after(4, "failed"), lambda ok, sb: ok),
    ContractCase("status 5: retracted, twice is fine", None, _retract_twice, lambda ok, sb: ok),
    ContractCase("status 6: banned by the platform", None, _banned, lambda ok, sb: ok),
    ContractCase("metrics: T+1 and growing", None, _metrics_t_plus_one, lambda ok, sb: ok, code=61501),
    # -- tokens --------------------------------------------------------------------------------------
    ContractCase("40001 once: one shared refresh, call repeated", fault(path="draft/add", errcode=40001),
                 publish, _token_refreshed_once),
    ContractCase("40001 twice: attempt fails, transient", fault(path="draft/add", errcode=40001, times=2),
                 publish, TokenRejected, code=40001),
    ContractCase("40014 twice: attempt fails, transient", fault(path="freepublish/submit", errcode=40014, times=2),
                 publish, TokenRejected, code=40014),
    ContractCase("42001 by the fake clock: refreshed without force", None, _expired_token_refreshed,
                 lambda ok, sb: ok, code=42001),
    ContractCase("42001 twice: attempt fails", fault(path="draft/add", errcode=42001, times=2), publish,
                 TokenRejected, code=42001),
    ContractCase("40013 unknown appid: needs reauth", None,
                 lambda ch, sb: factory_for_other(ch, appid="wxnobody").check_credentials(),
                 NeedsReauth, code=40013),
    ContractCase("40125 wrong secret: needs reauth", None,
                 lambda ch, sb: factory_for_other(ch, secret="wrong").check_credentials(), NeedsReauth, code=40125),
    ContractCase("40125 wrong secret: refused though the shared cache holds a token for the appid", None,
                 _wrong_secret_with_a_cached_token, NeedsReauth, code=40125),
    ContractCase("40164 IP not whitelisted: needs reauth", fault(path="stable_token", errcode=40164), publish,
                 NeedsReauth, code=40164),
    # -- quotas and availability ---------------------------------------------------------------------
    ContractCase("45009 daily quota: paused until next Shanghai midnight", knobs(publish_quota=0),
                 _quota_paused_until_is_next_shanghai_midnight, lambda ok, sb: ok, code=45009),
    ContractCase("45011 minute quota: back off to next minute", knobs(minute_quota=2), publish, RateLimited,
                 code=45011),
    ContractCase("-1 busy: retry", fault(path="draft/add", errcode=-1), publish, Unavailable, code=-1),
    ContractCase("HTTP 503: retry", fault(path="draft/add", status=503), publish, Unavailable, code=503),
    ContractCase("submit committed, answer lost: outcome unknown", fault(path="freepublish/submit",
                 drop_after_commit=True), publish, OutcomeUnknown),
    ContractCase("freepublish/get answer lost: just retry (read)", fault(path="freepublish/get",
                 drop_after_commit=True), lambda ch, sb: ch.status(make_ctx(progress={"publish_id": "1"})),
                 Unavailable),
    # -- permissions and content ---------------------------------------------------------------------
    ContractCase("48001 unauthorised API: permanent", fault(path="freepublish/submit", errcode=48001), publish,
                 InvalidRequest, code=48001),
    ContractCase("40007 unknown media_id: permanent", None,
                 lambda ch, sb: ch.publish(make_ctx(progress={"media_id": "draft_gone"})), InvalidRequest,
                 code=40007),
    ContractCase("53502 unknown publish_id: permanent", None,
                 lambda ch, sb: ch.status(make_ctx(progress={"publish_id": "999"})), InvalidRequest, code=53502),
    ContractCase("53600 unknown article_id: retract treats as gone", None, _retract_gone_article,
                 lambda ok, sb: ok, code=53600),
    ContractCase("45166 invalid content (recorded)", None, publish, ContentRejected, code=45166,
                 transport=recorded("draft/add", {"errcode": 45166, "errmsg": "invalid content hint: [x] rid: 1"})),
    ContractCase("53503 draft failed publish check", fault(path="freepublish/submit", errcode=53503), publish,
                 ContentRejected, code=53503),
    ContractCase("44003 empty news (recorded)", None, publish, InvalidRequest, code=44003,
                 transport=recorded("draft/add", {"errcode": 44003, "errmsg": "empty news data rid: 2"})),
    ContractCase("45003 title too long (recorded)", None, publish, InvalidRequest, code=45003,
                 transport=recorded("draft/add", {"errcode": 45003, "errmsg": "title size out of limit hint: [U5U1]"})),
    ContractCase("45004 digest too long", fault(path="draft/add", errcode=45004), publish, InvalidRequest,
                 code=45004),
    ContractCase("45002 content too large", fault(path="draft/add", errcode=45002), publish, InvalidRequest,
                 code=45002),
    ContractCase("47001 data format", fault(path="draft/add", errcode=47001), publish, InvalidRequest, code=47001),
    ContractCase("40005 image type refused", fault(path="material/add_material", errcode=40005), publish,
                 InvalidRequest, code=40005),
    ContractCase("40009 image size refused", fault(path="material/add_material", errcode=40009), publish,
                 InvalidRequest, code=40009),
    ContractCase("body image behind 3 redirects: followed and uploaded", None, _body_image_behind(3),
                 lambda out, sb: out[0].state == "awaiting_confirmation" and len(out[1].progress["images"]) == 1),
    ContractCase("body image behind 4 redirects: refused before any draft", None, _too_many_redirects,
                 lambda ok, sb: ok),
    ContractCase("cover given as a data: URI: uploaded", None, _inline_cover(base64.b64encode(PNG).decode()),
                 lambda out, sb: out[0].state == "awaiting_confirmation" and out[1].progress["thumb_media_id"]),
    ContractCase("cover given as a broken data: URI: refused", None, _inline_cover("not*base64"), InvalidRequest),
    ContractCase("41005 media missing", fault(path="material/add_material", errcode=41005), publish,
                 InvalidRequest, code=41005),
    ContractCase("61501 date range: metrics skip the day", None,
                 lambda ch, sb: ch.metrics([make_ctx(progress={"msg_data_id": "1", "published_on": "2999-01-01"})]),
                 lambda res, sb: res == {}, code=61501),
]  # fmt: skip


_server: RunningServer | None = None


def factory_for_other(ch: WeChatChannel, **creds: str) -> WeChatChannel:
    """The same adapter setup with other credentials (unknown appid, wrong secret)."""
    assert _server is not None
    return factory(_server, **creds)(None)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract(case: ContractCase, wx: SandboxControl, wx_server: RunningServer) -> None:
    global _server
    _server = wx_server
    run_case(factory(wx_server), case, wx)


def test_every_documented_and_mapped_code_has_a_case() -> None:
    documented = {-1, 40001, 40014, 42001, 45009, 45011, 48001, 40125, 40164, 45166, 47001, 44003, 45003, 53503}
    covered = {case.code for case in CASES}
    assert documented <= covered, documented - covered
    assert set(WeChatChannel.ERROR_MAP) <= covered, set(WeChatChannel.ERROR_MAP) - covered
