"""WeChat scenarios against the sandbox: token expiry under concurrency, quota pause, lost answers, resume.

The lead's multi-worker versions (Celery workers, the database) build on these; here the "workers" are
threads, each with its own adapter (and, for the SQL cache, its own cache instance over one database).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from channels.base import PostContent
from channels.errors import InvalidRequest, OutcomeUnknown, QuotaExhausted, Unavailable
from channels.sandbox.server import RunningServer
from channels.tokens import MemoryTokenCache, RedisTokenCache, SqlTokenCache, TokenCache
from channels.wechat import WeChatChannel
from tests.support.contract import SandboxControl, make_ctx
from tests.support.wechat import app_state, factory, settings

SHANGHAI = ZoneInfo("Asia/Shanghai")


def redis_client() -> Any:
    """A Redis client for the production-cache variant; skipped when Redis is unreachable (unless CI)."""
    import redis

    client = redis.Redis.from_url(os.environ.get("MATRIX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    try:
        client.ping()
    except Exception as exc:
        if os.environ.get("MATRIX_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis unreachable but MATRIX_TEST_REQUIRE_SERVICES=1: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    return client


def _threads(n: int, fn: Callable[[int], object]) -> list[object]:
    results: list[object] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.parametrize("store", ["memory", "sqlite", "redis"])
def test_token_expiry_mid_run_four_concurrent_deliveries_one_refresh(
    store: str,
    wx: SandboxControl,
    wx_server: RunningServer,
    tmp_path,
) -> None:
    if store == "memory":
        shared = MemoryTokenCache()
        caches: list[TokenCache] = [shared] * 4
    elif store == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'tokens.db'}", connect_args={"timeout": 30})
        SqlTokenCache(engine).create_table()
        caches = [SqlTokenCache(engine) for _ in range(4)]  # one per "worker"
    else:
        prefix = f"mmtest:{uuid.uuid4().hex}:"
        caches = [RedisTokenCache(redis_client(), prefix=prefix) for _ in range(4)]
    adapters = [factory(wx_server, cache=caches[i])(None) for i in range(4)]
    adapters[0].publish(make_ctx())  # a first delivery: the one initial token
    assert app_state(wx)["token_calls"]["stable_token"] == 1

    wx.advance(7300)  # the token expires on the platform mid-run; our cache still believes in it
    results = _threads(4, lambda i: adapters[i].publish(make_ctx()))

    assert all(getattr(r, "state", None) == "awaiting_confirmation" for r in results), results
    calls = app_state(wx)["token_calls"]
    assert calls["stable_token"] == 2, calls  # exactly one refresh, shared by the four
    assert calls["forced"] == 0  # an expired token needs no force_refresh (rationed 20/day)
    assert app_state(wx)["calls"]["freepublish/submit"] == 5
    for a in adapters:
        a.close()
    if store == "redis":
        for cache in caches:
            for key in cache.redis.scan_iter(f"{cache.prefix}*"):
                cache.redis.delete(key)


def test_quota_exhausted_pauses_until_next_day_then_resumes_without_new_draft(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    settings(wx, publish_quota=1)
    ch = factory(wx_server)(None)
    ch.publish(make_ctx())
    ctx = make_ctx()
    with pytest.raises(QuotaExhausted) as info:
        ch.publish(ctx)
    now = wx.http.get("/clock").json()["now"]
    local = datetime.fromtimestamp(now, SHANGHAI)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), SHANGHAI)
    # the next 00:00 Asia/Shanghai on the platform's (fake) clock, as aware UTC
    assert info.value.paused_until.tzinfo is not None and info.value.paused_until.utcoffset() == timedelta(0)
    assert abs((info.value.paused_until - midnight.astimezone(UTC)).total_seconds()) < 1
    assert "media_id" in ctx.progress and "publish_id" not in ctx.progress

    wx.advance((midnight.timestamp() - now) + 5)  # the next day on the platform's clock
    result = ch.publish(ctx)
    assert result.state == "awaiting_confirmation"
    calls = app_state(wx)["calls"]
    assert calls["draft/add"] == 2  # the first delivery's and this one's, not a third
    assert app_state(wx)["published_today"] == 1
    ch.close()


def test_answer_lost_after_submit_lookup_finds_it_published_once(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    ch = factory(wx_server)(None)
    ctx = make_ctx()
    wx.faults(path="freepublish/submit", drop_after_commit=True)
    with pytest.raises(OutcomeUnknown):
        ch.publish(ctx)
    assert "publish_id" not in ctx.progress and "media_id" in ctx.progress
    # still publishing on the platform, which lists finished articles only: not decidable yet
    with pytest.raises(OutcomeUnknown):
        ch.lookup(ctx)
    wx.advance(60)
    found = ch.lookup(ctx)
    assert found is not None and found.state == "published" and found.url
    assert ctx.progress["article_id"] == found.remote_id
    articles = app_state(wx)["articles"]
    assert len(articles) == 1 and articles[0]["url"] == found.url
    # metrics still join: msg_data_id was recovered from the article URL's mid
    wx.advance(86400)
    assert ch.metrics([ctx])[ctx.delivery_id].reads > 0
    assert ch.status(ctx).state == "published"
    ch.retract(ctx)
    assert ch.status(ctx).state == "retracted"
    ch.close()


def test_after_grace_an_unlisted_submit_is_retried_from_the_saved_draft(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    settings(wx, publish_outcome=3, settle_s=5)  # the first submit fails on the platform
    ch = factory(wx_server, submit_grace_s=0)(None)
    ctx = make_ctx()
    wx.faults(path="freepublish/submit", drop_after_commit=True)
    with pytest.raises(OutcomeUnknown):
        ch.publish(ctx)
    wx.advance(10)
    assert ch.lookup(ctx) is None  # not listed, grace over: publish again, resuming from the draft
    settings(wx, publish_outcome=0)
    assert ch.publish(ctx).state == "awaiting_confirmation"
    wx.advance(10)
    assert ch.status(ctx).state == "published"
    calls = app_state(wx)["calls"]
    assert calls["draft/add"] == 1 and calls["freepublish/submit"] == 2
    ch.close()


def test_draft_answer_lost_lookup_adopts_the_draft(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    ch = factory(wx_server)(None)
    ctx = make_ctx()
    wx.faults(path="draft/add", drop_after_commit=True)
    with pytest.raises(OutcomeUnknown):
        ch.publish(ctx)
    assert "media_id" not in ctx.progress
    assert ch.lookup(ctx) is None
    assert ctx.progress["media_id"] == app_state(wx)["drafts"][0]
    ch.publish(ctx)
    assert app_state(wx)["calls"]["draft/add"] == 1
    ch.close()


def test_status_moves_on_the_fake_clock(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    settings(wx, settle_s=120)
    ch = factory(wx_server)(None)
    ctx = make_ctx()
    assert ch.publish(ctx).state == "awaiting_confirmation"
    assert ch.status(ctx).state == "pending"
    wx.advance(60)
    assert ch.status(ctx).state == "pending"
    assert ch.lookup(ctx).state == "awaiting_confirmation"  # submitted: found, not published yet
    wx.advance(61)
    result = ch.status(ctx)
    assert result.state == "published" and result.url == ctx.progress["article_url"]
    assert (
        ctx.progress["published_on"]
        == datetime.fromtimestamp(wx.http.get("/clock").json()["now"], SHANGHAI).date().isoformat()
    )
    assert ch.lookup(ctx).state == "published"
    ch.close()


def test_failed_step_resumes_without_repeating_earlier_steps(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    ch = factory(wx_server)(None)
    ctx = make_ctx()
    wx.faults(path="freepublish/submit", errcode=-1)
    with pytest.raises(Unavailable):
        ch.publish(ctx)
    ch.publish(ctx)
    again = ch.publish(ctx)  # already submitted: returns the saved publish_id, no second submit
    assert again.remote_id == ctx.progress["publish_id"]
    calls = app_state(wx)["calls"]
    assert calls["material/add_material"] == 1 and calls["draft/add"] == 1 and calls["freepublish/submit"] == 1
    ch.close()


def test_body_images_uploaded_and_rewritten(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    import httpx

    pic, jpg = f"{wx_server.url}/files/pic.png", f"{wx_server.url}/files/pic.jpg"
    body = f"Intro\n\n![one]({pic})\n\n![two]({jpg})\n\n![again]({pic})\n"
    content = PostContent(title="Images", body=body, cover_url=jpg)
    ch = factory(wx_server)(None)
    ctx = make_ctx(content)
    ch.publish(ctx)
    assert set(ctx.progress["images"]) == {pic, jpg}
    assert all("/wechat/mmbiz/" in url for url in ctx.progress["images"].values())
    calls = app_state(wx)["calls"]
    assert calls["media/uploadimg"] == 2 and calls["material/add_material"] == 1
    wx.advance(60)
    page = httpx.get(ch.status(ctx).url).text
    assert page.count("/wechat/mmbiz/") == 3 and "/files/" not in page
    ch.close()


def test_outside_images_would_be_stripped_by_wechat(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    """The sandbox strips images not uploaded through uploadimg, as WeChat does: why the adapter uploads."""
    import httpx

    ch = factory(wx_server)(None)
    token = ch._token()
    cover = ch._upload_cover(None)
    html = f'<p>x</p><img src="{wx_server.url}/files/pic.png"/>'
    article = {"title": "t", "content": html, "thumb_media_id": cover}
    media_id = httpx.post(
        f"{wx_server.url}/wechat/cgi-bin/draft/add", params={"access_token": token}, json={"articles": [article]}
    ).json()["media_id"]
    got = httpx.post(
        f"{wx_server.url}/wechat/cgi-bin/draft/get", params={"access_token": token}, json={"media_id": media_id}
    ).json()
    assert "<img" not in got["news_item"][0]["content"]
    ch.close()


def test_body_image_of_unsupported_type_fails_before_any_draft(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    body = f"![gif]({wx_server.url}/files/anim.gif)"
    ch = factory(wx_server)(None)
    with pytest.raises(InvalidRequest, match="jpeg/png"):
        ch.publish(make_ctx(PostContent(title="gif", body=body)))
    with pytest.raises(InvalidRequest, match="404"):
        ch.publish(make_ctx(PostContent(title="missing", body=f"![x]({wx_server.url}/files/none.png)")))
    with pytest.raises(InvalidRequest, match="1,101,621 bytes, over 1,000,000"):
        ch.publish(make_ctx(PostContent(title="big", body=f"![x]({wx_server.url}/files/big.png)")))
    assert "draft/add" not in app_state(wx)["calls"]
    ch.close()


def test_idempotency_key_travels_in_content_source_url(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    ch = factory(wx_server)(None)
    ctx = make_ctx(depends_on_url="https://site.example/2026/post-7/")
    ch.publish(ctx)
    wx.advance(60)
    ch.status(ctx)
    article = app_state(wx)["articles"][0]
    assert article["content_source_url"] == f"https://site.example/2026/post-7/?mm_key={ctx.idempotency_key}"
    # a second delivery of another post is not confused with it
    other = make_ctx(PostContent(title="测试标题 Test", body="x"))
    assert ch.lookup(other) is None
    ch.close()


def test_demo_accounts_work_through_the_combined_sandbox() -> None:
    """`matrix up` mounts this sandbox at /wechat of the combined app; the demo accounts publish there."""
    from channels.base import AccountInfo
    from channels.sandbox import create_app, demo_accounts
    from channels.sandbox.server import serve_in_thread

    with serve_in_thread(create_app()) as server:
        demo = next(a for a in demo_accounts(server.url) if a["kind"] == "wechat")
        account = AccountInfo(1, "wechat", demo["name"], demo["credentials"], demo["config"])
        ch = WeChatChannel(account, token_cache=MemoryTokenCache())
        ctx = make_ctx()
        ch.check_credentials()
        assert ch.publish(ctx).state == "awaiting_confirmation"
        ch.close()


def test_metrics_found_when_status_dated_the_article_a_day_late(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    """An article of 23:59 first seen by a status poll after midnight is dated a day late; metrics cope."""
    from datetime import date

    ch = factory(wx_server)(None)
    ctx = make_ctx()
    ch.publish(ctx)
    wx.advance(60)
    ch.status(ctx)
    ctx.progress["published_on"] = (date.fromisoformat(ctx.progress["published_on"]) + timedelta(days=1)).isoformat()
    wx.advance(3 * 86400)
    metrics = ch.metrics([ctx])
    assert metrics[ctx.delivery_id].reads > 0
    assert app_state(wx)["calls"]["getarticletotaldetail"] == 2
    ch.close()


def test_lookup_finds_a_removed_article_so_it_is_never_republished(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    ch = factory(wx_server)(None)
    ctx = make_ctx()
    wx.faults(path="freepublish/submit", drop_after_commit=True)
    with pytest.raises(OutcomeUnknown):
        ch.publish(ctx)
    wx.advance(60)
    article_id = app_state(wx)["articles"][0]["article_id"]
    wx.http.post(f"/articles/{article_id}/ban").raise_for_status()  # the platform bans it
    found = ch.lookup(ctx)
    assert found is not None and found.remote_id == article_id
    assert ch.status(ctx).state == "retracted"
    assert app_state(wx)["calls"]["freepublish/submit"] == 1
    ch.close()


def test_lookup_by_title_when_the_account_has_no_link(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    """Without a website copy or source_url there is no 阅读原文 link to carry the key: the title decides."""
    ch = factory(wx_server, source_url="")(None)
    ctx = make_ctx(PostContent(title="没有链接的文章", body="正文"))
    wx.faults(path="freepublish/submit", drop_after_commit=True)
    with pytest.raises(OutcomeUnknown):
        ch.publish(ctx)
    wx.advance(60)
    assert app_state(wx)["articles"][0]["content_source_url"] == ""
    assert ch.lookup(ctx).state == "published"
    assert ch.lookup(make_ctx(PostContent(title="另一篇", body="x"))) is None
    ch.close()


def test_every_platform_call_goes_through_the_limiter(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    ch = factory(wx_server)(None)
    ch.publish(make_ctx())
    state = app_state(wx)
    platform_calls = sum(state["calls"].values()) + state["token_calls"]["stable_token"]
    assert ch.limiter.keys == ["wechat:42"] * platform_calls
    ch.close()


# -- a lost submit answer, then the retry (issue 12: a chaos run saw one article submitted again) ------------


def _submit_lost(wx: SandboxControl, ch: WeChatChannel, ctx) -> None:
    """Publish with the sandbox committing the submit and dropping its answer."""
    wx.faults(path="freepublish/submit", drop_after_commit=True)
    with pytest.raises(OutcomeUnknown):
        ch.publish(ctx)
    assert "publish_id" not in ctx.progress and ctx.progress.get("submit_started_at")


def test_lost_submit_still_publishing_after_the_grace_is_never_submitted_again(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    """The platform takes longer to publish than our grace: the retry's lookup must see the submission in
    flight (its draft has left the draft box) and wait, not submit the same draft a second time."""
    settings(wx, settle_s=900)  # publishing takes 15 minutes on the platform's clock
    ch = factory(wx_server, submit_grace_s=0)(None)  # the grace is over at once
    ctx = make_ctx()
    _submit_lost(wx, ch, ctx)
    for _ in range(3):  # reconcile's looks, and the engine's retries that look first
        with pytest.raises(OutcomeUnknown, match="draft box"):
            ch.lookup(ctx)
    wx.advance(900)
    found = ch.lookup(ctx)
    assert found is not None and found.state == "published"
    state = app_state(wx)
    assert state["calls"]["freepublish/submit"] == 1
    assert len(state["articles"]) == 1 and len(state["jobs"]) == 1
    ch.close()


def test_a_second_submit_of_a_draft_already_submitted_is_an_unknown_outcome(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    """A caller that skips the lookup (two workers on one delivery) gets 40007 for the draft the first submit
    took: that means "submitted already", never a failed delivery, and nothing is published twice."""
    settings(wx, settle_s=900)
    ch = factory(wx_server)(None)
    ctx = make_ctx()
    _submit_lost(wx, ch, ctx)
    with pytest.raises(OutcomeUnknown, match="already submitted"):
        ch.publish(ctx)
    wx.advance(900)
    assert ch.lookup(ctx).state == "published"
    assert len(app_state(wx)["articles"]) == 1
    ch.close()


def test_a_submit_that_never_reached_the_platform_is_sent_once_the_grace_is_over(
    wx: SandboxControl,
    wx_server: RunningServer,
) -> None:
    """The worker died after noting the submit and before the request left: the draft is still in the draft
    box and nothing is listed, so once the grace is over the retry submits it (once)."""
    ch = factory(wx_server, submit_grace_s=30)(None)
    ctx = make_ctx()
    wx.faults(path="freepublish/submit", status=503)  # refused before the platform saw it: nothing submitted
    with pytest.raises(Unavailable):
        ch.publish(ctx)
    ctx.progress["submit_started_at"] = time.time() - 10  # as if its answer had been lost 10 s ago
    with pytest.raises(OutcomeUnknown, match="not listed yet"):
        ch.lookup(ctx)  # within the grace: wait
    ctx.progress["submit_started_at"] = time.time() - 31
    assert ch.lookup(ctx) is None
    assert ch.publish(ctx).state == "awaiting_confirmation"
    wx.advance(60)
    assert ch.status(ctx).state == "published"
    state = app_state(wx)
    assert state["calls"]["draft/add"] == 1 and len(state["articles"]) == 1
    ch.close()
