"""Contract table of the website (WordPress) adapter, run against the WordPress sandbox over real HTTP.

Every code in ``WebsiteChannel.ERROR_MAP`` and ``WebsiteChannel.STATUS_MAP`` has a row (the meta-test
checks it). Where the sandbox reproduces WordPress's own behaviour the row uses it (wrong password,
contributor, missing site …); where only a plugin, proxy or WAF in front of WordPress would produce the
answer, the row injects it with the sandbox's fault knobs, in that component's own format (HTML for
proxies).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from channels.base import AccountInfo, Channel, DeliveryContext, PostContent, make_client
from channels.errors import InvalidRequest, NeedsReauth, OutcomeUnknown, RateLimited, Unavailable
from channels.sandbox.server import RunningServer
from channels.sandbox.wordpress import DEMO_PASSWORD
from channels.website import WebsiteChannel
from tests.support.contract import ContractCase, SandboxControl, make_ctx, run_case

COVER = "{wp}/_sandbox/sample-cover.png"


# ------------------------------------------------------------------------------------------ helpers


def as_user(ch: Channel, username: str, password: str | None = None, site: str | None = None) -> WebsiteChannel:
    """The same site (or another one) with another user's credentials."""
    base = ch.account.config["base_url"]
    if site is not None:
        base = base.rsplit("/", 1)[0] + "/" + site
    account = replace(
        ch.account,
        credentials={"username": username, "app_password": password or "pass word 1234 5678 abcd"},
        config={"base_url": base},
    )
    return WebsiteChannel(account)


def add_user(sb: SandboxControl | None, username: str, role: str) -> None:
    assert sb is not None
    sb.add_account(site="demo", username=username, app_password="pass word 1234 5678 abcd", role=role)


def live_posts(sb: SandboxControl | None, site: str = "demo") -> list[dict[str, Any]]:
    assert sb is not None
    return [p for p in sb.state()["sites"][site]["posts"] if p["status"] != "trash"]


def inject(**fault: Any):
    """A setup that injects one fault (WordPress JSON if ``code`` is given, else per status)."""

    def setup(sb: SandboxControl | None) -> None:
        assert sb is not None
        sb.faults(**fault)

    return setup


def publish_new(ch: Channel, **content: Any) -> DeliveryContext:
    ctx = make_ctx(PostContent(**{"title": "标题", "body": "正文", **content}) if content else None)
    result = ch.publish(ctx)
    ctx.remote_id, ctx.remote_url = result.remote_id, result.url
    return ctx


def publish_call(ch: Channel, sb: SandboxControl | None) -> Any:
    return ch.publish(make_ctx())


def publish_with_cover(ch: Channel, sb: SandboxControl | None) -> tuple[Any, DeliveryContext]:
    assert sb is not None
    ctx = make_ctx(PostContent(title="带封面", body="正文", cover_url=COVER.format(wp=sb.url)))
    return ch.publish(ctx), ctx


# ------------------------------------------------------------------------------------ predicates


def one_published_post(result: Any, sb: SandboxControl | None) -> bool:
    posts = live_posts(sb)
    assert result.state == "published" and result.url
    assert len(posts) == 1 and str(posts[0]["id"]) == result.remote_id
    assert posts[0]["slug"].startswith("mm-") and posts[0]["meta"]["mm_delivery"] == posts[0]["slug"]
    page = httpx.get(result.url)
    assert page.status_code == 200 and "测试标题" in page.text and "<strong>body</strong>" in page.text
    return True


def only_original_left(result: Any, sb: SandboxControl | None) -> bool:
    assert sb is not None
    calls = sb.state()["sites"]["demo"]["calls"]
    assert calls["posts.create"] == 2 and calls["posts.delete"] == 1  # the duplicate existed, then went
    posts = live_posts(sb)
    return len(posts) == 1 and posts[0]["id"] == int(result.remote_id) and not posts[0]["slug"].endswith("-2")


def cover_attached(out: tuple[Any, DeliveryContext], sb: SandboxControl | None) -> bool:
    result, ctx = out
    state = sb.state()["sites"]["demo"] if sb else {}
    assert len(state["media"]) == 1 and state["media"][0]["mime"] == "image/png"
    assert ctx.progress["media_id"] == state["media"][0]["id"]
    assert live_posts(sb)[0]["featured_media"] == ctx.progress["media_id"]
    assert ctx.progress["post_id"] == int(result.remote_id)
    return "wp-post-image" in httpx.get(result.url).text


# ------------------------------------------------------------------------------------ multi-step calls


def cover_uploaded_once_across_retries(ch: Channel, sb: SandboxControl | None) -> int:
    """Cover stored, post creation fails with 503, retry: the saved media id is reused."""
    assert sb is not None
    sb.faults(path="/wp-json/wp/v2/posts", method="POST", status=503)
    ctx = make_ctx(PostContent(title="t", body="b", cover_url=COVER.format(wp=sb.url)))
    with pytest.raises(Unavailable):
        ch.publish(ctx)
    assert "media_id" in ctx.progress and "post_id" not in ctx.progress
    ch.publish(ctx)
    return len(sb.state()["sites"]["demo"]["media"])


def lost_answer_then_lookup(ch: Channel, sb: SandboxControl | None) -> Any:
    """The post is committed but the answer lost; lookup (what reconcile does) finds exactly it."""
    assert sb is not None
    sb.faults(path="/wp-json/wp/v2/posts", method="POST", drop_after_commit=True)
    ctx = make_ctx()
    with pytest.raises(OutcomeUnknown):
        ch.publish(ctx)
    found = ch.lookup(ctx)
    assert found is not None and ctx.progress["post_id"] == int(found.remote_id)
    return found


def publish_twice_without_lookup(ch: Channel, sb: SandboxControl | None) -> Any:
    """A caller that skips the look-up: WordPress would make slug ``<key>-2``; the adapter undoes it."""
    ctx = make_ctx()
    first = ch.publish(ctx)
    second = ch.publish(make_ctx(delivery_id=ctx.delivery_id))
    assert second.remote_id == first.remote_id
    return second


def retract_twice(ch: Channel, sb: SandboxControl | None) -> bool:
    ctx = publish_new(ch)
    ch.retract(ctx)
    ch.retract(ctx)  # rest_already_trashed: still success
    return httpx.get(ctx.remote_url).status_code == 404 and not live_posts(sb)


def retract_by_lookup_after_lost_reply(ch: Channel, sb: SandboxControl | None) -> bool:
    """DELETE's answer is lost; the retry finds the post already trashed."""
    assert sb is not None
    ctx = publish_new(ch)
    sb.faults(path="/posts/", method="DELETE", drop_after_commit=True)
    with pytest.raises(OutcomeUnknown):
        ch.retract(ctx)
    ch.retract(ctx)
    return not live_posts(sb)


def metrics_after_an_hour(ch: Channel, sb: SandboxControl | None) -> dict[int, Any]:
    assert sb is not None
    published = publish_new(ch)
    never = make_ctx()  # no remote id: skipped
    sb.advance(3600)
    return {
        "published": published.delivery_id,
        "never": never.delivery_id,
        "m": ch.metrics([published, never]),
    }


def status_of(ch: Channel, sb: SandboxControl | None) -> Any:
    ctx = publish_new(ch)
    return ch.status(ctx)


# ------------------------------------------------------------------------------------ recorded replies


def recorded_html_login_page(request: httpx.Request) -> httpx.Response:
    # a security plugin answering the REST URL with its login page, status 200
    return httpx.Response(200, html="<html><body><form id='loginform'>…</form></body></html>")


def recorded_redirect(request: httpx.Request) -> httpx.Response:
    return httpx.Response(301, headers={"Location": "https://www.example.cn/wp-json/wp/v2/users/me"})


def recorded_maintenance_with_date(request: httpx.Request) -> httpx.Response:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    return httpx.Response(
        503,
        headers={"Retry-After": when},
        json={
            "code": "wp_die",
            "message": "Briefly unavailable for scheduled maintenance.",
            "data": {"status": 503},
        },
    )


def recorded_created_but_garbled(request: httpx.Request) -> httpx.Response:
    # 201 whose body was cut by a plugin printing a PHP notice first: the post exists, the id is unknown
    return httpx.Response(201, text='<b>Notice</b>: Undefined index in functions.php{"id":5')


def is_none(result: Any, sb: SandboxControl | None) -> bool:
    return result is None


CASES: list[ContractCase] = [
    # --- credentials
    ContractCase("credentials ok", None, lambda ch, sb: ch.check_credentials(), is_none),
    ContractCase(
        "wrong application password",
        None,
        lambda ch, sb: as_user(ch, "editor", "wrong pass").check_credentials(),
        NeedsReauth,
        code="incorrect_password",
    ),
    ContractCase(
        "unknown user",
        None,
        lambda ch, sb: as_user(ch, "nobody").check_credentials(),
        NeedsReauth,
        code="invalid_username",
    ),
    ContractCase(
        "Authorization header stripped by the web server",
        inject(path="users/me", status=401, code="rest_not_logged_in", message="You are not currently logged in."),
        lambda ch, sb: ch.check_credentials(),
        NeedsReauth,
        code="rest_not_logged_in",
    ),
    ContractCase(
        "contributor cannot publish (credential check)",
        lambda sb: add_user(sb, "helper", "contributor"),
        lambda ch, sb: as_user(ch, "helper").check_credentials(),
        NeedsReauth,
        code="rest_cannot_publish",
    ),
    ContractCase(
        "HTTP basic-auth proxy in front of a staging site",
        inject(path="users/me", status=401, proxy=True),
        lambda ch, sb: ch.check_credentials(),
        NeedsReauth,
        code=401,
    ),
    ContractCase(
        "security plugin answers REST with its login page",
        None,
        lambda ch, sb: ch.check_credentials(),
        InvalidRequest,
        transport=recorded_html_login_page,
    ),
    ContractCase(
        "http site redirects to https",
        None,
        lambda ch, sb: ch.check_credentials(),
        InvalidRequest,
        code=301,
        transport=recorded_redirect,
    ),
    ContractCase(
        "site does not exist / REST API disabled",
        None,
        lambda ch, sb: as_user(ch, "editor", DEMO_PASSWORD, site="nosuchsite").check_credentials(),
        InvalidRequest,
        code="rest_no_route",
    ),
    ContractCase(
        "not a WordPress server (plain 404 page)",
        inject(path="users/me", status=404, proxy=True),
        lambda ch, sb: ch.check_credentials(),
        InvalidRequest,
        code=404,
    ),
    # --- publish
    ContractCase("publish ok", None, publish_call, one_published_post),
    ContractCase("publish with cover", None, publish_with_cover, cover_attached),
    ContractCase(
        "cover uploaded once across retries",
        None,
        cover_uploaded_once_across_retries,
        lambda n, sb: n == 1 and len(live_posts(sb)) == 1,
    ),
    ContractCase(
        "maintenance mode 503",
        inject(path="/posts", status=503),
        publish_call,
        Unavailable,
        code=503,
    ),
    ContractCase(
        "maintenance 503 with Retry-After as a date",
        None,
        lambda ch, sb: ch.check_credentials(),
        Unavailable,
        code=503,
        transport=recorded_maintenance_with_date,
    ),
    ContractCase(
        "PHP fatal error (WordPress JSON)",
        inject(path="/posts", status=500),
        publish_call,
        Unavailable,
        code="internal_server_error",
    ),
    ContractCase(
        "PHP-FPM bare 500", inject(path="/posts", status=500, proxy=True), publish_call, Unavailable, code=500
    ),
    ContractCase("nginx 502", inject(path="/posts", status=502), publish_call, Unavailable, code=502),
    ContractCase("nginx 504", inject(path="/posts", status=504), publish_call, Unavailable, code=504),
    ContractCase(
        "rate limited with Retry-After",
        inject(path="/posts", status=429, retry_after=7),
        publish_call,
        RateLimited,
        code=429,
    ),
    ContractCase(
        "application password revoked",
        inject(path="/posts", status=401),
        publish_call,
        NeedsReauth,
        code="incorrect_password",
    ),
    ContractCase(
        "WAF blocks the request (HTML 403)",
        inject(path="/posts", status=403, proxy=True),
        publish_call,
        NeedsReauth,
        code=403,
    ),
    ContractCase(
        "security plugin forbids REST writes",
        inject(path="/posts", status=403),
        publish_call,
        NeedsReauth,
        code="rest_forbidden",
    ),
    ContractCase(
        "subscriber cannot create posts",
        lambda sb: add_user(sb, "reader", "subscriber"),
        lambda ch, sb: as_user(ch, "reader").publish(make_ctx()),
        NeedsReauth,
        code="rest_cannot_create",
    ),
    ContractCase(
        "contributor cannot publish",
        lambda sb: add_user(sb, "helper", "contributor"),
        lambda ch, sb: as_user(ch, "helper").publish(make_ctx()),
        NeedsReauth,
        code="rest_cannot_publish",
    ),
    ContractCase(
        "bad parameter",
        inject(path="/posts", status=400, code="rest_invalid_param", message="Invalid parameter(s): status"),
        publish_call,
        InvalidRequest,
        code="rest_invalid_param",
    ),
    ContractCase(
        "a plugin's own 400 code",
        inject(path="/posts", status=400, code="acme_blocked_word", message="Blocked word"),
        publish_call,
        InvalidRequest,
        code=400,
    ),
    ContractCase(
        "JSON mangled on the way",
        inject(path="/posts", status=400, code="rest_invalid_json", message="Invalid JSON body passed."),
        publish_call,
        InvalidRequest,
        code="rest_invalid_json",
    ),
    ContractCase(
        "empty post",
        None,
        lambda ch, sb: ch.publish(make_ctx(PostContent(title="", body=""))),
        InvalidRequest,
        code="empty_content",
    ),
    ContractCase(
        "featured media id no longer exists",
        None,
        lambda ch, sb: ch.publish(
            make_ctx(PostContent(title="t", body="b", cover_url="http://x/c.png"), progress={"media_id": 9999})
        ),
        InvalidRequest,
        code="rest_invalid_featured_media",
    ),
    ContractCase(
        "cover upload: no data",
        inject(path="/media", status=400, code="rest_upload_no_data", message="No data supplied."),
        publish_with_cover,
        InvalidRequest,
        code="rest_upload_no_data",
    ),
    ContractCase(
        "cover upload: Content-Disposition stripped",
        inject(
            path="/media",
            status=400,
            code="rest_upload_no_content_disposition",
            message="No Content-Disposition",
        ),
        publish_with_cover,
        InvalidRequest,
        code="rest_upload_no_content_disposition",
    ),
    ContractCase(
        "cover upload: file type refused (HTTP 500, not retried)",
        inject(path="/media", status=500, code="rest_upload_sideload_error", message="not allowed file type"),
        publish_with_cover,
        InvalidRequest,
        code="rest_upload_sideload_error",
    ),
    ContractCase(
        "cover upload: too large for the web server",
        inject(path="/media", status=413),
        publish_with_cover,
        InvalidRequest,
        code=413,
    ),
    ContractCase(
        "cover URL gone",
        None,
        lambda ch, sb: ch.publish(make_ctx(PostContent(title="t", body="b", cover_url=f"{sb.url}/nosite/x.png"))),
        InvalidRequest,
        code=404,
    ),
    ContractCase(
        "post committed, answer lost",
        inject(path="/wp-json/wp/v2/posts", method="POST", drop_after_commit=True),
        publish_call,
        OutcomeUnknown,
    ),
    ContractCase(
        "post committed, answer lost: lookup finds exactly one post",
        None,
        lost_answer_then_lookup,
        lambda found, sb: found.state == "published" and len(live_posts(sb)) == 1,
    ),
    ContractCase(
        "post created but reply garbled",
        None,
        publish_call,
        OutcomeUnknown,
        transport=recorded_created_but_garbled,
    ),
    ContractCase(
        "duplicate slug: second post removed, original kept",
        None,
        publish_twice_without_lookup,
        lambda res, sb: only_original_left(res, sb),
    ),
    # --- lookup / status
    ContractCase("lookup of a post never made", None, lambda ch, sb: ch.lookup(make_ctx()), is_none),
    ContractCase(
        "lookup by a subscriber",
        lambda sb: add_user(sb, "reader", "subscriber"),
        lambda ch, sb: as_user(ch, "reader").lookup(make_ctx()),
        NeedsReauth,
        code="rest_forbidden_status",
    ),
    ContractCase("status of a published post", None, status_of, lambda st, sb: st.state == "published" and st.url),
    ContractCase(
        "status of a deleted post",
        None,
        lambda ch, sb: ch.status(make_ctx(remote_id="424242")),
        lambda st, sb: st.state == "failed" and "deleted" in st.reason,
        code="rest_post_invalid_id",
    ),
    # --- retract / metrics
    ContractCase("retract twice", None, retract_twice, lambda ok, sb: ok is True, code="rest_already_trashed"),
    ContractCase("retract, answer lost, retract again", None, retract_by_lookup_after_lost_reply, lambda ok, sb: ok),
    ContractCase(
        "retract a post that is gone",
        None,
        lambda ch, sb: ch.retract(make_ctx(remote_id="424242")),
        is_none,
        code="rest_post_invalid_id",
    ),
    ContractCase(
        "author may not trash an editor's post",
        lambda sb: add_user(sb, "writer", "author"),
        lambda ch, sb: as_user(ch, "writer").retract(publish_new(ch)),
        NeedsReauth,
        code="rest_cannot_delete",
    ),
    ContractCase(
        "comment counts after an hour",
        None,
        metrics_after_an_hour,
        lambda out, sb: (
            out["m"][out["published"]].comments == 6
            and out["m"][out["published"]].reads is None
            and out["never"] not in out["m"]
        ),
    ),
]


# ------------------------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def wp(sandbox_server: RunningServer) -> Iterator[SandboxControl]:
    control = SandboxControl(sandbox_server.url, "/wp")
    yield control
    control.close()


def factory_for(sandbox: SandboxControl):
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


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract(case: ContractCase, wp: SandboxControl) -> None:
    run_case(factory_for(wp), case, wp)


def test_rate_limit_carries_retry_after(wp: SandboxControl) -> None:
    exc = run_case(
        factory_for(wp),
        ContractCase("429", inject(path="/posts", status=429, retry_after=7), publish_call, RateLimited),
        wp,
    )
    assert exc.retry_after == 7


def test_retry_after_http_date_is_parsed(wp: SandboxControl) -> None:
    case = ContractCase(
        "503 date",
        None,
        lambda ch, sb: ch.check_credentials(),
        Unavailable,
        transport=recorded_maintenance_with_date,
    )
    exc = run_case(factory_for(wp), case, wp)
    assert 100 <= exc.retry_after <= 121


def test_503_twice_then_success_makes_one_post(wp: SandboxControl) -> None:
    """What the worker does with transient errors: retry the same delivery; the third try publishes."""
    wp.reset()
    wp.faults(path="/wp-json/wp/v2/posts", method="POST", status=503, times=2)
    ch = factory_for(wp)(None)
    ctx = make_ctx()
    attempts = 0
    result = None
    while result is None:
        attempts += 1
        try:
            result = ch.publish(ctx)
        except Unavailable:
            assert attempts < 3
    assert attempts == 3 and result.state == "published"
    assert len(live_posts(wp)) == 1


def test_exceptions_survive_pickling(wp: SandboxControl) -> None:
    import pickle

    exc = run_case(
        factory_for(wp),
        ContractCase("429", inject(path="/posts", status=429, retry_after=3), publish_call, RateLimited),
        wp,
    )
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is RateLimited and again.code == 429 and again.retry_after == 3 and str(again) == str(exc)


def test_cover_fetch_sends_no_credentials(wp: SandboxControl) -> None:
    """The site's password must never reach the host serving the cover image."""
    seen: list[httpx.Request] = []
    real = httpx.HTTPTransport()

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return real.handle_request(request)

    wp.reset()
    ch = factory_for(wp)(httpx.MockTransport(spy))
    ch.publish(make_ctx(PostContent(title="t", body="b", cover_url=COVER.format(wp=wp.url))))
    cover_requests = [r for r in seen if r.url.path.endswith("sample-cover.png")]
    api_requests = [r for r in seen if "/wp-json/" in r.url.path]
    assert cover_requests and all("authorization" not in r.headers for r in cover_requests)
    assert api_requests and all(r.headers["authorization"].startswith("Basic ") for r in api_requests)


def test_render_limits_and_sanitises() -> None:
    ch = WebsiteChannel(AccountInfo(1, "website", "x", {"username": "u", "app_password": "p"}, {"base_url": ""}))
    out = ch.render(PostContent(title="标" * 300, body="![i](https://a/b.png)\n\n<script>x()</script>正文" * 1))
    assert len(out.title) == WebsiteChannel.title_maxlen and out.title.endswith("…")
    assert "<script" not in out.html and out.images == ("https://a/b.png",)
    assert out.summary == "正文"
    with pytest.raises(InvalidRequest):
        ch.render(PostContent(title="t", body="x" * (WebsiteChannel.body_maxlen + 1)))


def test_missing_credentials_need_reauth() -> None:
    ch = WebsiteChannel(AccountInfo(1, "website", "x", {}, {"base_url": "http://127.0.0.1:9"}))
    with pytest.raises(NeedsReauth):
        ch.check_credentials()
