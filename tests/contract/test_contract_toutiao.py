"""Contract table of the Toutiao adapter (console session mode and assisted mode), against the sandbox.

Every code in ``Toutiao.ERROR_MAP`` and ``Toutiao.STATUS_MAP`` has a row (the meta-test checks it). The
sandbox reproduces the console's own answers for expired sessions, frozen accounts, banned words, the daily
quota, repeats and unknown articles; the rest is injected with fault knobs (HTTP 200 and the code in the
body, as the console answers) or replayed from recorded replies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from channels.base import AccountInfo, Channel, DeliveryContext, PostContent, make_client
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
from channels.toutiao import Toutiao
from tests.support.contract import ContractCase, SandboxControl, make_ctx, run_case

SESSION = "demo-toutiao-session-1"
CONTENT = PostContent(title="市政府召开安全生产工作会议", body="会议指出，要**压实责任**。\n\n第二段正文。")


# ------------------------------------------------------------------------------------------ helpers


class RecordingLimiter:
    """Records what the adapter asks the limiter for, without waiting (the service brings the real one)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float]] = []

    def acquire(self, key: str, per_second: float, burst: int = 1) -> None:
        self.asked.append((key, per_second))


NO_WAIT = RecordingLimiter()


def ctx(content: PostContent | None = None, **kwargs: Any) -> DeliveryContext:
    return make_ctx(content or CONTENT, **kwargs)


def publish_call(ch: Channel, sb: SandboxControl | None) -> Any:
    return ch.publish(ctx())


def with_session(ch: Channel, sessionid: str, expires_at: str = "2099-01-01T00:00:00+00:00", **config: Any) -> Toutiao:
    account = replace(
        ch.account,
        credentials={"sessionid": sessionid, "expires_at": expires_at},
        config={**ch.account.config, **config},
    )
    return Toutiao(account, ch.client, limiter=ch.limiter)  # same client: recorded replies reach every account


def inject(**fault: Any):
    def setup(sb: SandboxControl | None) -> None:
        assert sb is not None
        sb.faults(**fault)

    return setup


def publish_injected(code: int) -> Any:
    return inject(path="/mp/agw/article/publish", err_no=code)


def articles(sb: SandboxControl | None) -> list[dict[str, Any]]:
    assert sb is not None
    return [a for a in sb.state()["articles"] if not a["deleted"]]


def is_none(result: Any, sb: SandboxControl | None) -> bool:
    return result is None


def published(ch: Channel, sb: SandboxControl | None, content: PostContent | None = None) -> DeliveryContext:
    """Publish and let the review pass on the fake clock."""
    assert sb is not None
    context = ctx(content)
    context.remote_id = ch.publish(context).remote_id
    sb.advance(120)
    return context


# ------------------------------------------------------------------------------------ multi-step calls


def awaiting_review(result: Any, sb: SandboxControl | None) -> bool:
    stored = articles(sb)
    assert result.state == "awaiting_confirmation" and len(stored) == 1
    form = stored[0]["form"]
    # what the console's editor sends
    assert form["save"] == "1" and form["pgc_id"] == "0" and form["title"] == CONTENT.title
    assert "<strong>压实责任</strong>" in form["content"] and form["title_id"]
    return stored[0]["pgc_id"] == result.remote_id


def review_passes(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    context = ctx()
    context.remote_id = ch.publish(context).remote_id
    assert ch.status(context).state == "pending"
    sb.advance(120)
    return ch.status(context), context


def review_rejected(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    sb.add_account(sessionid="strict", reject_review=True, reject_reason="标题夸大")
    strict = with_session(ch, "strict")
    context = ctx()
    context.remote_id = strict.publish(context).remote_id
    sb.advance(120)
    return strict.status(context)


def session_expired_on_platform(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    sb.http.post("/sessions/expire", json={"sessionid": SESSION}).raise_for_status()
    return ch.publish(ctx())


def session_expired_locally(ch: Channel, sb: SandboxControl | None) -> Any:
    """Past ``expires_at`` no request is sent at all."""
    assert sb is not None
    stale = with_session(ch, SESSION, expires_at="2020-01-01T00:00:00Z")
    with pytest.raises(NeedsReauth):
        stale.publish(ctx())
    return sb.state()["calls"]


def frozen_account(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    sb.add_account(sessionid="frozen", frozen=True)
    return with_session(ch, "frozen").check_credentials()


def banned_words(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    sb.add_account(sessionid="careful", banned_words=["压实责任"])
    return with_session(ch, "careful").publish(ctx())


def daily_quota(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    sb.add_account(sessionid="quota", daily_limit=1)
    limited = with_session(ch, "quota")
    limited.publish(ctx())
    return limited.publish(ctx(PostContent(title="第二篇文章的标题", body="另一篇正文")))


def repeat_of_another_delivery(ch: Channel, sb: SandboxControl | None) -> Any:
    ch.publish(ctx())
    return ch.publish(ctx())  # another delivery, same title and body


def republish_after_lost_answer(ch: Channel, sb: SandboxControl | None) -> Any:
    """A caller that skips the look-up: the console says "repeat"; the adapter recognises its own."""
    assert sb is not None
    sb.faults(path="/mp/agw/article/publish", drop_after_commit=True)
    context = ctx()
    with pytest.raises(OutcomeUnknown):
        ch.publish(context)
    assert "pgc_id" not in context.progress
    return ch.publish(context)


def lost_answer_then_lookup(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    sb.faults(path="/mp/agw/article/publish", drop_after_commit=True)
    context = ctx()
    with pytest.raises(OutcomeUnknown):
        ch.publish(context)
    assert "pgc_id" not in context.progress and context.progress["title_id"]
    found = ch.lookup(context)
    assert found is not None and context.progress["pgc_id"] == found.remote_id
    return found


def retract_twice(ch: Channel, sb: SandboxControl | None) -> bool:
    context = published(ch, sb)
    url = ch.status(context).url
    assert httpx.get(url).status_code == 200
    ch.retract(context)
    ch.retract(context)  # 7004: gone already, still success
    return httpx.get(url).status_code == 404 and ch.status(context).state == "retracted"


def metrics_after_an_hour(ch: Channel, sb: SandboxControl | None) -> dict[str, Any]:
    assert sb is not None
    live = published(ch, sb)
    gone = published(ch, sb, PostContent(title="另一篇要删除的文章", body="正文"))
    ch.retract(gone)
    sb.advance(3600)
    return {"live": live.delivery_id, "gone": gone.delivery_id, "m": ch.metrics([live, gone])}


def with_image(sb: SandboxControl | None, image: str = "sample.png") -> DeliveryContext:
    assert sb is not None
    url = f"{sb.url}/static/{image}"
    return ctx(PostContent(title="职工书屋图片新闻报道", body=f"开篇一段。\n\n![书屋]({url})\n\n结尾。", cover_url=url))


def images_uploaded(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    context = with_image(sb)
    result = ch.publish(context)
    return result, context, sb.state()


def uploads_reused_across_retries(ch: Channel, sb: SandboxControl | None) -> Any:
    """The article submission fails after the images went up; the retry uploads nothing again."""
    assert sb is not None
    sb.faults(path="/mp/agw/article/publish", err_no=-1)
    context = with_image(sb)
    with pytest.raises(Unavailable):
        ch.publish(context)
    assert list(context.progress["images"]) == [f"{sb.url}/static/sample.png"]
    ch.publish(context)
    return sb.state()["calls"]["image"]


def images_on_the_console(out: Any, sb: SandboxControl | None) -> bool:
    result, context, state = out
    form = state["articles"][0]["form"]
    image = context.progress["images"][f"{sb.url}/static/sample.png"]
    assert f'src="{image["url"]}"' in form["content"] and "/static/sample.png" not in form["content"]
    covers = json.loads(form["pgc_feed_covers"])
    assert [c["uri"] for c in covers] == [image["uri"]] and image["width"] == 8
    assert state["calls"]["image"] == 1  # the body image and the cover are one file: uploaded once
    return result.state == "awaiting_confirmation" and httpx.get(image["url"]).content[:4] == b"\x89PNG"


def manual_account(ch: Channel) -> Toutiao:
    account = replace(ch.account, credentials={}, config={"mode": "manual", "platform": "头条号"})
    return Toutiao(account, ch.client, limiter=ch.limiter)


def manual_publish(ch: Channel, sb: SandboxControl | None) -> Any:
    assert sb is not None
    result = manual_account(ch).publish(ctx())
    return result, sb.state()["calls"]


# ------------------------------------------------------------------------------------ recorded replies


def recorded_publish_ok(request: httpx.Request) -> httpx.Response:
    # shape of the console's answer as public tools read it: err_no 0 and data.pgc_id
    assert request.headers["cookie"].startswith(f"sessionid={SESSION}")
    return httpx.Response(200, json={"err_no": 0, "message": "", "data": {"pgc_id": "7301234567890123456"}})


def recorded_not_logged_in_code(request: httpx.Request) -> httpx.Response:
    # some console endpoints say it with "code" rather than "err_no"
    return httpx.Response(200, json={"code": 1001, "message": "请先登录", "data": None})


def recorded_login_redirect(request: httpx.Request) -> httpx.Response:
    return httpx.Response(302, headers={"Location": "https://mp.toutiao.com/auth/page/login?redirect_url=%2F"})


def recorded_forbidden(request: httpx.Request) -> httpx.Response:
    return httpx.Response(403, text="Forbidden")


def recorded_unauthorized(request: httpx.Request) -> httpx.Response:
    return httpx.Response(401, json={"message": "unauthorized"})


def recorded_gateway(request: httpx.Request) -> httpx.Response:
    return httpx.Response(504, html="<html>504 Gateway Time-out</html>")


CASES: list[ContractCase] = [
    # --- session
    ContractCase("credentials ok", None, lambda ch, sb: ch.check_credentials(), is_none),
    ContractCase("session expired on the console", None, session_expired_on_platform, NeedsReauth, code=1001),
    ContractCase(
        "session past expires_at: no request sent",
        None,
        session_expired_locally,
        lambda calls, sb: calls.get("publish", 0) == 0,
    ),
    ContractCase(
        "not logged in, said with 'code' (recorded)",
        None,
        lambda ch, sb: ch.check_credentials(),
        NeedsReauth,
        code=1001,
        transport=recorded_not_logged_in_code,
    ),
    ContractCase(
        "redirect to the login page (recorded)", None, publish_call, NeedsReauth, transport=recorded_login_redirect
    ),
    ContractCase("HTTP 403 (recorded)", None, publish_call, NeedsReauth, code=403, transport=recorded_forbidden),
    ContractCase("HTTP 401 (recorded)", None, publish_call, NeedsReauth, code=401, transport=recorded_unauthorized),
    ContractCase("account frozen", None, frozen_account, NeedsReauth, code=1002),
    # --- publish
    ContractCase("publish: awaiting review", None, publish_call, awaiting_review),
    ContractCase(
        "publish ok (recorded reply)",
        None,
        publish_call,
        lambda r, sb: r.remote_id == "7301234567890123456" and r.state == "awaiting_confirmation",
        transport=recorded_publish_ok,
    ),
    ContractCase(
        "review passes on the fake clock",
        None,
        review_passes,
        lambda out, sb: out[0].state == "published" and out[1].progress["url"] == out[0].url,
    ),
    ContractCase(
        "review rejected",
        None,
        review_rejected,
        lambda st, sb: st.state == "failed" and st.reason == "标题夸大",
    ),
    ContractCase(
        "title too short (our check)",
        None,
        lambda ch, sb: ch.publish(ctx(PostContent(title="短标题", body="正文"))),
        InvalidRequest,
        code=7050,
    ),
    ContractCase("save failed (console)", publish_injected(7050), publish_call, InvalidRequest, code=7050),
    ContractCase("banned words", None, banned_words, ContentRejected, code=7051),
    ContractCase("daily quota spent", None, daily_quota, QuotaExhausted, code=7052),
    ContractCase("repeat of another delivery", None, repeat_of_another_delivery, ContentRejected, code=7053),
    ContractCase(
        "repeat after our own lost answer: recognised",
        None,
        republish_after_lost_answer,
        lambda r, sb: r.state == "awaiting_confirmation" and len(articles(sb)) == 1,
    ),
    ContractCase("images uploaded first, HTML and cover point at them", None, images_uploaded, images_on_the_console),
    ContractCase("uploaded images reused across retries", None, uploads_reused_across_retries, lambda n, sb: n == 1),
    ContractCase(
        "image store refuses the file",
        inject(path="/spice/image", code=7020),
        lambda ch, sb: ch.publish(with_image(sb)),
        InvalidRequest,
        code=7020,
    ),
    ContractCase(
        "image gone at its source",
        None,
        lambda ch, sb: ch.publish(with_image(sb, "missing.png")),
        InvalidRequest,
        code=404,
    ),
    ContractCase("console busy", publish_injected(-1), publish_call, Unavailable, code=-1),
    ContractCase("too frequent", publish_injected(1003), publish_call, RateLimited, code=1003),
    ContractCase("unknown body code", publish_injected(8888), publish_call, InvalidRequest, code=8888),
    ContractCase("gateway timeout (recorded)", None, publish_call, Unavailable, code=504, transport=recorded_gateway),
    ContractCase(
        "article saved, answer lost",
        inject(path="/mp/agw/article/publish", drop_after_commit=True),
        publish_call,
        OutcomeUnknown,
    ),
    ContractCase(
        "article saved, answer lost: lookup finds exactly it",
        None,
        lost_answer_then_lookup,
        lambda found, sb: found.state == "awaiting_confirmation" and len(articles(sb)) == 1,
    ),
    # --- lookup / retract / metrics
    ContractCase("lookup of an article never sent", None, lambda ch, sb: ch.lookup(ctx()), is_none),
    ContractCase("retract twice", None, retract_twice, lambda ok, sb: ok is True, code=7004),
    ContractCase(
        "reads, diggs and comments after an hour",
        None,
        metrics_after_an_hour,
        lambda out, sb: out["m"][out["live"]].reads > 0 and out["gone"] not in out["m"],
    ),
    # --- assisted (manual) mode
    ContractCase(
        "manual mode: awaiting_manual, no request",
        None,
        manual_publish,
        lambda out, sb: out[0].state == "awaiting_manual" and not out[1],
    ),
    ContractCase(
        "manual mode: retraction is by hand",
        None,
        lambda ch, sb: manual_account(ch).retract(ctx(remote_id="x")),
        InvalidRequest,
        code="manual_only",
    ),
]


# ------------------------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def toutiao(sandbox_server: RunningServer) -> Iterator[SandboxControl]:
    control = SandboxControl(sandbox_server.url, "/toutiao")
    yield control
    control.close()


def factory_for(sandbox: SandboxControl):
    account = AccountInfo(
        id=31,
        kind="toutiao",
        name="示范头条号",
        credentials={"sessionid": SESSION, "expires_at": "2099-01-01T00:00:00+00:00"},
        config={"base_url": sandbox.url},
    )

    def factory(transport: httpx.BaseTransport | None) -> Channel:
        client = make_client(Toutiao.base_url(account), transport=transport) if transport else None
        return Toutiao(account, client, limiter=NO_WAIT)

    return factory


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract(case: ContractCase, toutiao: SandboxControl) -> None:
    run_case(factory_for(toutiao), case, toutiao)


def test_quota_pauses_until_midnight_shanghai(toutiao: SandboxControl) -> None:
    exc = run_case(factory_for(toutiao), ContractCase("quota", None, daily_quota, QuotaExhausted), toutiao)
    shanghai = exc.paused_until.astimezone(ZoneInfo("Asia/Shanghai"))
    assert exc.paused_until.tzinfo is not None and exc.paused_until > datetime.now(UTC)
    assert (shanghai.hour, shanghai.minute) == (0, 0)
    assert (exc.paused_until - datetime.now(UTC)).total_seconds() <= 86_400


def test_manual_instance_declares_what_it_cannot_do(toutiao: SandboxControl) -> None:
    session = factory_for(toutiao)(None)
    manual = manual_account(session)
    assert (session.supports_retract, session.supports_metrics, session.asynchronous) == (True, True, True)
    assert (manual.supports_retract, manual.supports_metrics, manual.asynchronous) == (False, False, False)
    assert manual.metrics([ctx(remote_id="x")]) == {}
    session.close()


def test_every_call_goes_through_the_limiter(toutiao: SandboxControl) -> None:
    channel = factory_for(toutiao)(None)
    NO_WAIT.asked.clear()
    channel.check_credentials()
    channel.publish(ctx())
    channel.close()
    assert NO_WAIT.asked == [("toutiao:31", Toutiao.rate_per_second)] * 2


# -- a lost answer, then the retry: never a second article (issue 12) -----------------------------------------


def _lost_publish(ch: Channel, sb: SandboxControl) -> DeliveryContext:
    """Publish with the console committing the article and dropping its answer."""
    sb.faults(path="/mp/agw/article/publish", drop_after_commit=True)
    context = ctx()
    with pytest.raises(OutcomeUnknown):
        ch.publish(context)
    assert "pgc_id" not in context.progress
    return context


def test_lost_answer_then_removed_before_the_lookup_is_found_not_posted_again(toutiao: SandboxControl) -> None:
    """The article landed and someone deleted it before the retry looked: it was posted once, and posting it
    again would defy the removal. The lookup finds it; its status says retracted."""
    toutiao.reset()
    channel = factory_for(toutiao)(None)
    context = _lost_publish(channel, toutiao)
    (article,) = toutiao.state()["articles"]
    channel.retract(ctx(remote_id=article["pgc_id"]))  # removed on the platform (by a person, say)
    found = channel.lookup(context)
    assert found is not None and found.remote_id == article["pgc_id"]
    assert channel.status(context).state == "retracted"
    assert len(toutiao.state()["articles"]) == 1
    channel.close()


def test_lost_answer_then_rejected_by_review_is_found_and_fails_with_the_reason(toutiao: SandboxControl) -> None:
    """The article landed and the platform's review rejected it: the lookup finds it, its status says failed with
    the platform's reason (what a delivery without a lost answer gets), and nothing is submitted again."""
    toutiao.reset()
    session = "toutiao-rejecting-" + "x" * 8
    toutiao.add_account(sessionid=session, review_s=0, reject_review=True, reject_reason="标题党")
    channel = with_session(factory_for(toutiao)(None), session)
    context = _lost_publish(channel, toutiao)
    found = channel.lookup(context)
    assert found is not None and found.state == "awaiting_confirmation"
    status = channel.status(context)
    assert status.state == "failed" and "标题党" in (status.reason or "")
    assert len(toutiao.state()["articles"]) == 1
    channel.close()
