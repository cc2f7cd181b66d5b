"""Contract table of the Weibo adapter, run against the Weibo sandbox over real HTTP.

Every code in ``Weibo.ERROR_MAP`` has a row (the meta-test checks it). Where the sandbox reproduces
Weibo's own behaviour the row uses it (expired and revoked tokens, safe domain, hourly limit, someone
else's status, long articles not enabled, the long-article hourly limit); the other codes are injected
with the sandbox's fault knobs in Weibo's own envelope, and a few rows replay recorded platform replies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from channels.base import AccountInfo, Channel, DeliveryContext, PostContent, make_client
from channels.errors import (
    ContentRejected,
    InvalidRequest,
    NeedsReauth,
    OutcomeUnknown,
    RateLimited,
    Unavailable,
)
from channels.sandbox.server import RunningServer
from channels.weibo import Weibo, strip_links, weibo_length
from tests.support.contract import ContractCase, SandboxControl, make_ctx, run_case

TOKEN, UID = "demo-weibo-token-1", "5000000001"
ARTICLE_TOKEN, ARTICLE_UID = "demo-weibo-token-2", "5000000002"


# ------------------------------------------------------------------------------------------ helpers


class RecordingLimiter:
    """Records what the adapter asks the limiter for, without waiting (the service brings the real one)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float, int]] = []

    def acquire(self, key: str, per_second: float, burst: int = 1) -> None:
        self.asked.append((key, per_second, burst))


NO_WAIT = RecordingLimiter()


def site_url(sb: SandboxControl | None) -> str:
    """A website URL on the sandbox host (the demo app's safe domain)."""
    root = sb.url.rsplit("/weibo", 1)[0] if sb else "http://127.0.0.1:8100"
    return f"{root}/wp/demo/2026/11/23/notice/"


def ctx_for(sb: SandboxControl | None, content: PostContent | None = None, **kwargs: Any) -> DeliveryContext:
    return make_ctx(content, depends_on_url=site_url(sb), **kwargs)


def publish_call(ch: Channel, sb: SandboxControl | None) -> Any:
    return ch.publish(ctx_for(sb))


def as_account(ch: Channel, token: str, uid: str, **config: Any) -> Weibo:
    account = replace(
        ch.account,
        credentials={"access_token": token, "uid": uid},
        config={**ch.account.config, **config},
    )
    return Weibo(account, ch.client, limiter=ch.limiter)  # same client: recorded replies reach every account


def article_channel(ch: Channel, sb: SandboxControl | None) -> Weibo:
    assert sb is not None
    return as_account(ch, ARTICLE_TOKEN, ARTICLE_UID, long_article=True, default_cover=f"{sb.url}/static/cover.png")


def inject(**fault: Any):
    """A setup that injects one fault in Weibo's envelope (``error_code``; ``code`` for long articles)."""

    def setup(sb: SandboxControl | None) -> None:
        assert sb is not None
        sb.faults(**fault)

    return setup


def statuses(sb: SandboxControl | None, uid: str = UID, *, live: bool = True) -> list[dict[str, Any]]:
    assert sb is not None
    return [s for s in sb.state()["statuses"] if s["uid"] == uid and not (live and s["deleted"])]


def is_none(result: Any, sb: SandboxControl | None) -> bool:
    return result is None


# ------------------------------------------------------------------------------------ predicates


def one_status_with_link(result: Any, sb: SandboxControl | None) -> bool:
    posted = statuses(sb)
    assert result.state == "published" and len(posted) == 1
    status = posted[0]
    assert status["idstr"] == result.remote_id
    # Weibo stores a t.cn address; the original link (with our marker) is what we sent
    assert "http://t.cn/" in status["text"] and "mm=mm-" in status["sent_text"]
    assert weibo_length(status["sent_text"]) <= 140
    page = httpx.get(result.url)
    return page.status_code == 200 and "测试标题 Test" in page.text and site_url(sb) in page.text


def article_published(result: Any, sb: SandboxControl | None) -> bool:
    assert sb is not None
    article = sb.state()["articles"][0]
    assert result.remote_id == article["mid"] and result.url.endswith(article["object_id"])
    page = httpx.get(result.url)
    return page.status_code == 200 and "<strong>body</strong>" in page.text


# ------------------------------------------------------------------------------------ multi-step calls


def expired_token(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    sb.add_account(uid="5000000101", access_token="short-lived", expires_in=60)
    sb.advance(120)
    return as_account(ch, "short-lived", "5000000101").publish(ctx_for(sb))


def revoked_token(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    sb.http.post("/tokens/revoke", json={"access_token": TOKEN}).raise_for_status()
    return ch.check_credentials()


def off_safe_domain_at_platform(ch: Channel, sb: SandboxControl | None) -> Any:
    """Our own check is off (no safe_domain configured): Weibo itself refuses with 10017."""
    plain = as_account(ch, TOKEN, UID, safe_domain="")
    return plain.publish(make_ctx(depends_on_url="https://elsewhere.example.com/post/1"))


def past_hourly_limit(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    sb.add_account(uid="5000000102", access_token="busy", hourly_limit=2)
    busy = as_account(ch, "busy", "5000000102")
    for n in range(2):
        busy.publish(ctx_for(sb, PostContent(title=f"第{n}条", body="正文")))
    return busy.publish(ctx_for(sb, PostContent(title="第3条", body="正文")))


def retract_someone_elses(ch: Channel, sb: SandboxControl | None) -> Any:
    ctx = ctx_for(sb)
    ctx.remote_id = ch.publish(ctx).remote_id
    return as_account(ch, ARTICLE_TOKEN, ARTICLE_UID).retract(ctx)


def retract_twice(ch: Channel, sb: SandboxControl | None) -> bool:
    ctx = ctx_for(sb)
    result = ch.publish(ctx)
    ctx.remote_id = result.remote_id
    ch.retract(ctx)
    ch.retract(ctx)  # 20101: already gone, still success
    return httpx.get(result.url).status_code == 404 and not statuses(sb)


def status_after_retract(ch: Channel, sb: SandboxControl | None) -> Any:
    ctx = ctx_for(sb)
    ctx.remote_id = ch.publish(ctx).remote_id
    ch.retract(ctx)
    return ch.status(ctx)


def lost_answer_then_lookup(ch: Channel, sb: SandboxControl | None) -> Any:
    """The status is posted but the answer lost; lookup (what reconcile does) finds exactly it."""
    assert sb is not None
    sb.faults(path="/2/statuses/share.json", drop_after_commit=True)
    ctx = ctx_for(sb)
    with pytest.raises(OutcomeUnknown):
        ch.publish(ctx)
    assert "idstr" not in ctx.progress and ctx.progress["status_text"]
    found = ch.lookup(ctx)
    assert found is not None and ctx.progress["idstr"] == found.remote_id
    return found


def republish_after_lost_answer(ch: Channel, sb: SandboxControl | None) -> Any:
    """A caller that skips the look-up gets Weibo's 20019; the adapter recognises its own status."""
    assert sb is not None
    sb.faults(path="/2/statuses/share.json", drop_after_commit=True)
    ctx = ctx_for(sb)
    with pytest.raises(OutcomeUnknown):
        ch.publish(ctx)
    return ch.publish(ctx)


def republish_elsewhere_repeat(ch: Channel, sb: SandboxControl | None) -> Any:
    """20019 for a text that is not ours on the timeline: a real content rejection."""
    assert sb is not None
    sb.faults(path="/2/statuses/share.json", error_code=20019, status=400)
    return ch.publish(ctx_for(sb))


def article_not_enabled(ch: Channel, sb: SandboxControl | None) -> Any:
    return as_account(ch, TOKEN, UID, long_article=True, default_cover="http://x/c.png").publish(ctx_for(sb))


def article_too_often(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    sb.add_account(uid="5000000103", access_token="articles", long_article=True, hourly_limit=1)
    writer = as_account(ch, "articles", "5000000103", long_article=True, default_cover=f"{sb.url}/static/cover.png")
    writer.publish(ctx_for(sb, PostContent(title="第一篇", body="正文一")))
    return writer.publish(ctx_for(sb, PostContent(title="第二篇", body="正文二")))


def article_call(ch: Channel, sb: SandboxControl | None) -> Any:
    return article_channel(ch, sb).publish(ctx_for(sb))


def metrics_after_an_hour(ch: Channel, sb: SandboxControl | None) -> dict[str, Any]:
    assert sb is not None
    live, gone, never = ctx_for(sb), ctx_for(sb, PostContent(title="另一条", body="正文")), ctx_for(sb)
    for ctx in (live, gone):
        ctx.remote_id = ch.publish(ctx).remote_id
    ch.retract(gone)
    sb.advance(3600)
    return {
        "live": live.delivery_id,
        "gone": gone.delivery_id,
        "never": never.delivery_id,
        "m": ch.metrics([live, gone, never]),
    }


# ------------------------------------------------------------------------------------ recorded replies


def recorded_share_ok(request: httpx.Request) -> httpx.Response:
    # open.weibo.com/wiki/2/statuses/share, "返回结果" (trimmed)
    return httpx.Response(
        200,
        json={
            "created_at": "Wed Oct 24 23:49:17 +0800 2012",
            "id": 3504803600500000,
            "mid": "3504803600502730",
            "idstr": "3504803600502730",
            "text": "分组定向图片微博",
            "source": "新浪微博</a>",
            "favorited": False,
            "truncated": False,
        },
    )


def recorded_expired_token(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        401, json={"error": "expired_token", "error_code": 21327, "request": "/2/statuses/share.json"}
    )


def recorded_error_code_as_string(request: httpx.Request) -> httpx.Response:
    # old wiki example: error_code sent as a string
    return httpx.Response(
        400, json={"request": "/statuses/update.json", "error_code": "20019", "error": "Repeat conetnt"}
    )


def recorded_article_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "code": "100000",
            "msg": "",
            "data": {
                "object_id": "1022:2310474521012345678",
                "url": "https://weibo.com/ttarticle/p/show?id=2310474521012345678",
                "mid": "4521012345678901",
            },
        },
    )


def recorded_html_gateway_error(request: httpx.Request) -> httpx.Response:
    return httpx.Response(502, html="<html><body>502 Bad Gateway</body></html>")


def share_injected(code: int, status: int = 400) -> Any:
    return inject(path="/2/statuses/share.json", error_code=code, status=status)


def article_injected(code: str) -> Any:
    return inject(path="/proxy/article/publish.json", code=code)


CASES: list[ContractCase] = [
    # --- credentials and tokens (no refresh on Weibo: a dead token needs a person)
    ContractCase("credentials ok", None, lambda ch, sb: ch.check_credentials(), is_none),
    ContractCase("token expired on the fake clock", None, expired_token, NeedsReauth, code=21327),
    ContractCase("token revoked", None, revoked_token, NeedsReauth, code=21332),
    ContractCase(
        "expired token (recorded)", None, publish_call, NeedsReauth, code=21327, transport=recorded_expired_token
    ),
    ContractCase("auth failed", share_injected(21301, 401), publish_call, NeedsReauth, code=21301),
    ContractCase("OAuth1 token used", share_injected(21314, 401), publish_call, NeedsReauth, code=21314),
    ContractCase("OAuth1 token expired", share_injected(21315, 401), publish_call, NeedsReauth, code=21315),
    ContractCase("OAuth1 token revoked", share_injected(21316, 401), publish_call, NeedsReauth, code=21316),
    ContractCase("OAuth1 token rejected", share_injected(21317, 401), publish_call, NeedsReauth, code=21317),
    ContractCase(
        "authorisation removed by the user", share_injected(21319, 401), publish_call, NeedsReauth, code=21319
    ),
    ContractCase("invalid weibo user", share_injected(10013, 403), publish_call, NeedsReauth, code=10013),
    # --- publish
    ContractCase("publish ok", None, publish_call, one_status_with_link),
    ContractCase(
        "publish ok (recorded reply)",
        None,
        publish_call,
        lambda r, sb: r.remote_id == "3504803600502730" and r.url.endswith("/5000000001/3504803600502730"),
        transport=recorded_share_ok,
    ),
    ContractCase("no website URL yet", None, lambda ch, sb: ch.publish(make_ctx()), InvalidRequest),
    ContractCase(
        "link off the safe domain (our check)",
        None,
        lambda ch, sb: ch.publish(make_ctx(depends_on_url="https://elsewhere.example.com/p/1")),
        InvalidRequest,
        code=10017,
    ),
    ContractCase("link off the safe domain (platform)", None, off_safe_domain_at_platform, InvalidRequest, code=10017),
    ContractCase("past the hourly posting limit", None, past_hourly_limit, RateLimited, code=10024),
    ContractCase("IP rate limit", share_injected(10022, 403), publish_call, RateLimited, code=10022),
    ContractCase("user rate limit", share_injected(10023, 403), publish_call, RateLimited, code=10023),
    ContractCase("posting too often", share_injected(20016), publish_call, RateLimited, code=20016),
    ContractCase("repeat content, not ours", None, republish_elsewhere_repeat, ContentRejected, code=20019),
    ContractCase(
        "repeat content, code as a string (recorded)",
        None,
        publish_call,
        ContentRejected,
        code=20019,
        transport=recorded_error_code_as_string,
    ),
    ContractCase(
        "repeat after our own lost answer: recognised",
        None,
        republish_after_lost_answer,
        lambda r, sb: r.state == "published" and len(statuses(sb)) == 1,
    ),
    ContractCase("similar content", share_injected(20017), publish_call, ContentRejected, code=20017),
    ContractCase("illegal website", share_injected(20018), publish_call, ContentRejected, code=20018),
    ContractCase("advertising", share_injected(20020), publish_call, ContentRejected, code=20020),
    ContractCase("illegal content", share_injected(20021), publish_call, ContentRejected, code=20021),
    ContractCase("repeated weibo text", share_injected(20111), publish_call, ContentRejected, code=20111),
    ContractCase("text too long", share_injected(20012), publish_call, InvalidRequest, code=20012),
    ContractCase("IP limit", share_injected(10004, 403), publish_call, InvalidRequest, code=10004),
    ContractCase("parameter error", share_injected(10008), publish_call, InvalidRequest, code=10008),
    ContractCase("illegal request", share_injected(10012), publish_call, InvalidRequest, code=10012),
    ContractCase("missing parameter", share_injected(10016), publish_call, InvalidRequest, code=10016),
    ContractCase("Urls is null (not an auth error)", share_injected(21501), publish_call, InvalidRequest, code=21501),
    ContractCase("unknown 4xx code", share_injected(29999), publish_call, InvalidRequest, code=29999),
    ContractCase("system error", share_injected(10001, 500), publish_call, Unavailable, code=10001),
    ContractCase("service unavailable", share_injected(10002, 503), publish_call, Unavailable, code=10002),
    ContractCase("remote service error", share_injected(10003, 500), publish_call, Unavailable, code=10003),
    ContractCase("system busy", share_injected(10009, 503), publish_call, Unavailable, code=10009),
    ContractCase("RPC error", share_injected(10011, 500), publish_call, Unavailable, code=10011),
    ContractCase("job expired: may have posted", share_injected(10010, 500), publish_call, OutcomeUnknown, code=10010),
    ContractCase(
        "gateway 502 (HTML)", None, publish_call, Unavailable, code=502, transport=recorded_html_gateway_error
    ),
    ContractCase(
        "status posted, answer lost",
        inject(path="/2/statuses/share.json", drop_after_commit=True),
        publish_call,
        OutcomeUnknown,
    ),
    ContractCase(
        "status posted, answer lost: lookup finds exactly it",
        None,
        lost_answer_then_lookup,
        lambda found, sb: found.state == "published" and len(statuses(sb)) == 1,
    ),
    # --- long articles (头条文章)
    ContractCase("long article ok", None, article_call, article_published),
    ContractCase(
        "long article ok (recorded reply)",
        None,
        article_call,
        lambda r, sb: r.remote_id == "4521012345678901" and "ttarticle" in r.url,
        transport=recorded_article_ok,
    ),
    ContractCase("long articles not enabled for the account", None, article_not_enabled, InvalidRequest, code=10014),
    ContractCase("long article posted too often", None, article_too_often, RateLimited, code=11001),
    ContractCase("long article: system error", article_injected("10001"), article_call, Unavailable, code=10001),
    ContractCase(
        "long article: parameter invalid", article_injected("10008"), article_call, InvalidRequest, code=10008
    ),
    ContractCase(
        "long article: bound status not created", article_injected("11002"), article_call, Unavailable, code=11002
    ),
    ContractCase("long article: binding failed", article_injected("11003"), article_call, OutcomeUnknown, code=11003),
    # --- lookup / status / retract / metrics
    ContractCase("lookup of a status never posted", None, lambda ch, sb: ch.lookup(ctx_for(sb)), is_none),
    ContractCase("status after retraction", None, status_after_retract, lambda st, sb: st.state == "retracted"),
    ContractCase("retract twice", None, retract_twice, lambda ok, sb: ok is True, code=20101),
    ContractCase("retract someone else's status", None, retract_someone_elses, InvalidRequest, code=20102),
    ContractCase(
        "counts after an hour; deleted ids silently missing",
        None,
        metrics_after_an_hour,
        lambda out, sb: (
            out["m"][out["live"]].comments > 0
            and out["m"][out["live"]].reads is None
            and out["gone"] not in out["m"]
            and out["never"] not in out["m"]
        ),
    ),
]


# ------------------------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def weibo(sandbox_server: RunningServer) -> Iterator[SandboxControl]:
    control = SandboxControl(sandbox_server.url, "/weibo")
    yield control
    control.close()


def factory_for(sandbox: SandboxControl):
    account = AccountInfo(
        id=21,
        kind="weibo",
        name="示范微博",
        credentials={"access_token": TOKEN, "uid": UID},
        config={"base_url": sandbox.url, "safe_domain": "127.0.0.1", "rip": "127.0.0.1"},
    )

    def factory(transport: httpx.BaseTransport | None) -> Channel:
        client = make_client(Weibo.base_url(account), transport=transport) if transport else None
        return Weibo(account, client, limiter=NO_WAIT)

    return factory


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract(case: ContractCase, weibo: SandboxControl) -> None:
    run_case(factory_for(weibo), case, weibo)


def test_lookup_matches_despite_t_cn_rewrite(weibo: SandboxControl) -> None:
    """Weibo stores t.cn links, so the stored text differs from the sent one; lookup still matches."""
    weibo.reset()
    ch = factory_for(weibo)(None)
    ctx = ctx_for(weibo)
    ch.publish(ctx)
    stored = statuses(weibo)[0]
    assert stored["text"] != stored["sent_text"]
    assert strip_links(stored["text"]) == strip_links(ctx.progress["status_text"])
    again = make_ctx(delivery_id=ctx.delivery_id, depends_on_url=ctx.depends_on_url)  # nothing saved
    found = ch.lookup(again)
    assert found is not None and found.remote_id == stored["idstr"]


def test_rate_limit_carries_retry_after(weibo: SandboxControl) -> None:
    case = ContractCase(
        "429", inject(path="/2/statuses/share.json", status=429, retry_after=5), publish_call, RateLimited
    )
    exc = run_case(factory_for(weibo), case, weibo)
    assert exc.retry_after == 5


def test_every_call_goes_through_the_limiter(weibo: SandboxControl) -> None:
    weibo.reset()
    channel = factory_for(weibo)(None)
    NO_WAIT.asked.clear()
    channel.check_credentials()
    channel.publish(ctx_for(weibo))
    channel.close()
    # each call: the account's pace, then the server IP's hourly budget shared by every Weibo account
    ip = ("weibo:ip", Weibo.ip_limit[0] / 2 / Weibo.ip_limit[1], Weibo.ip_limit[0] // 2)
    assert NO_WAIT.asked == [("weibo:21", Weibo.rate_per_second, 1), ip] * 2


# -- a lost answer, then the retry: never a second status (issue 12) ------------------------------------------


def _live_statuses(sb: SandboxControl, uid: str) -> list[dict[str, Any]]:
    return [s for s in sb.state()["statuses"] if s["uid"] == uid and not s["deleted"]]


def test_lost_share_answer_then_the_retry_finds_it_and_posts_nothing(weibo: SandboxControl) -> None:
    """What the engine does after a lost answer: look first (found: done); a retry that skips the look still
    posts nothing (20019 for our own text, recognised as ours)."""
    weibo.reset()
    ch = factory_for(weibo)(None)
    weibo.faults(path="/2/statuses/share.json", drop_after_commit=True)
    context = ctx_for(weibo)
    with pytest.raises(OutcomeUnknown):
        ch.publish(context)
    found = ch.lookup(context)
    assert found is not None and found.state == "published"
    again = ctx_for(weibo, delivery_id=context.delivery_id, progress={"status_text": context.progress["status_text"]})
    assert ch.publish(again).remote_id == found.remote_id  # no look first: 20019, then found
    assert len(_live_statuses(weibo, UID)) == 1
    ch.close()


def test_lost_long_article_answer_then_the_lookup_finds_its_bound_status(weibo: SandboxControl) -> None:
    """A 头条文章's answer lost: the lookup finds the status bound to it on the timeline (the marker is in its
    link), so the retry does not publish a second article."""
    weibo.reset()
    ch = article_channel(factory_for(weibo)(None), weibo)
    weibo.faults(path="/proxy/article/publish.json", drop_after_commit=True)
    context = ctx_for(weibo)
    with pytest.raises(OutcomeUnknown):
        ch.publish(context)
    found = ch.lookup(context)
    assert found is not None and found.state == "published"
    (status,) = _live_statuses(weibo, ARTICLE_UID)
    assert str(status["id"]) == found.remote_id and len(weibo.state()["articles"]) == 1
    ch.close()
