"""The WordPress sandbox behaves like WordPress where the adapter depends on it, and its knobs work.

Talks plain HTTP to a real uvicorn server (no adapter involved), so these tests pin the sandbox itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from channels.sandbox import SANDBOXES, create_app, demo_accounts
from channels.sandbox.media import SAMPLE_PNG
from channels.sandbox.server import RunningServer, serve_in_thread
from channels.sandbox.wordpress import COMMENT_EVERY_S, DEMO_PASSWORD
from tests.support.contract import SandboxControl

AUTH = ("editor", DEMO_PASSWORD)


@pytest.fixture()
def sb(sandbox_server: RunningServer) -> Iterator[SandboxControl]:
    control = SandboxControl(sandbox_server.url, "/wp")
    control.reset()
    yield control
    control.reset()
    control.close()


@pytest.fixture()
def api(sb: SandboxControl) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sb.url}/demo/wp-json/wp/v2", auth=AUTH, timeout=10) as client:
        yield client


def create(api: httpx.Client, **fields: object) -> httpx.Response:
    return api.post("/posts", json={"title": "标题", "content": "<p>正文</p>", "status": "publish", **fields})


# ------------------------------------------------------------------------------------- WordPress rules


def test_duplicate_slug_gets_numbered_like_wordpress(api: httpx.Client) -> None:
    slugs = [create(api, slug="mm-7").json()["slug"] for _ in range(3)]
    assert slugs == ["mm-7", "mm-7-2", "mm-7-3"]
    only = api.get("/posts", params={"slug": "mm-7", "status": "any"}).json()
    assert [p["slug"] for p in only] == ["mm-7"]  # the slug filter is exact


def test_trash_frees_the_slug_and_hides_the_post(api: httpx.Client) -> None:
    post = create(api, slug="mm-8").json()
    trashed = api.delete(f"/posts/{post['id']}")
    assert trashed.status_code == 200 and trashed.json()["status"] == "trash"
    assert trashed.json()["slug"] == "mm-8__trashed"
    assert api.get("/posts", params={"slug": "mm-8", "status": "any"}).json() == []
    again = api.delete(f"/posts/{post['id']}")
    assert again.status_code == 410 and again.json()["code"] == "rest_already_trashed"
    assert create(api, slug="mm-8").json()["slug"] == "mm-8"
    assert httpx.get(post["link"]).status_code == 404
    forced = api.delete(f"/posts/{post['id']}", params={"force": "true"})
    assert forced.json()["deleted"] is True
    assert api.get(f"/posts/{post['id']}").json()["code"] == "rest_post_invalid_id"


def test_non_public_statuses_need_an_editing_user(sb: SandboxControl, api: httpx.Client) -> None:
    draft = create(api, status="draft").json()
    assert draft["slug"] == ""  # WordPress assigns slugs on publish only
    anonymous = httpx.get(f"{sb.url}/demo/wp-json/wp/v2/posts", params={"status": "any"})
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "rest_forbidden_status"
    assert httpx.get(f"{sb.url}/demo/wp-json/wp/v2/posts").json() == []  # anonymous: published only
    assert [p["id"] for p in api.get("/posts", params={"status": "any"}).json()] == [draft["id"]]
    assert httpx.get(f"{sb.url}/demo/?p={draft['id']}").status_code == 404


def test_roles(sb: SandboxControl) -> None:
    sb.add_account(site="demo", username="helper", app_password="aaaa bbbb", role="contributor")
    with httpx.Client(base_url=f"{sb.url}/demo/wp-json/wp/v2", auth=("helper", "aaaabbbb")) as helper:
        refused = create(helper)
        assert refused.status_code == 403 and refused.json()["code"] == "rest_cannot_publish"
        assert create(helper, status="pending").status_code == 201
        me = helper.get("/users/me", params={"context": "edit"}).json()
        assert me["roles"] == ["contributor"]


def test_authentication_errors(sb: SandboxControl) -> None:
    base = f"{sb.url}/demo/wp-json/wp/v2"
    assert httpx.get(f"{base}/users/me").json()["code"] == "rest_not_logged_in"
    bad = httpx.get(f"{base}/posts", auth=("editor", "nope"))  # a bad password fails even public reads
    assert bad.status_code == 401 and bad.json()["code"] == "incorrect_password"
    assert httpx.get(f"{base}/users/me", auth=("ghost", "x")).json()["code"] == "invalid_username"
    anon = httpx.post(f"{base}/posts", json={"title": "x"})
    assert anon.status_code == 401 and anon.json()["code"] == "rest_cannot_create"
    assert httpx.get(f"{sb.url}/nosite/wp-json/wp/v2/users/me").json()["code"] == "rest_no_route"


def test_create_validation(api: httpx.Client) -> None:
    bad = create(api, status="published")
    assert bad.status_code == 400 and bad.json()["code"] == "rest_invalid_param"
    assert "status" in bad.json()["data"]["params"]
    empty = api.post("/posts", json={"status": "publish"})
    assert empty.status_code == 400 and empty.json()["code"] == "empty_content"
    assert create(api, featured_media=999).json()["code"] == "rest_invalid_featured_media"
    garbled = api.post("/posts", content=b"{not json", headers={"Content-Type": "application/json"})
    assert garbled.json()["code"] == "rest_invalid_json"
    created = create(api, meta={"mm_delivery": "mm-1", "unregistered": "x"})
    assert created.status_code == 201 and created.headers["location"].endswith(f"/posts/{created.json()['id']}")
    assert created.json()["meta"] == {"mm_delivery": "mm-1"}  # unregistered meta keys are ignored


def test_form_encoded_create(api: httpx.Client) -> None:
    created = api.post("/posts", data={"title": "表单", "content": "c", "status": "publish"})
    assert created.status_code == 201 and created.json()["title"]["raw"] == "表单"


def test_pagination_headers(api: httpx.Client) -> None:
    for i in range(5):
        create(api, slug=f"p-{i}")
    page = api.get("/posts", params={"per_page": 2, "page": 3})
    assert page.headers["x-wp-total"] == "5" and page.headers["x-wp-totalpages"] == "3"
    assert len(page.json()) == 1
    beyond = api.get("/posts", params={"per_page": 2, "page": 4})
    assert beyond.status_code == 400 and beyond.json()["code"] == "rest_post_invalid_page_number"
    assert api.get("/posts", params={"per_page": 101}).json()["code"] == "rest_invalid_param"


def test_media_upload_raw_and_multipart(sb: SandboxControl, api: httpx.Client) -> None:
    raw = api.post(
        "/media",
        content=SAMPLE_PNG,
        headers={"Content-Type": "image/png", "Content-Disposition": 'attachment; filename="cover.png"'},
    )
    assert raw.status_code == 201 and raw.json()["mime_type"] == "image/png"
    assert httpx.get(raw.json()["source_url"]).content == SAMPLE_PNG
    multi = api.post("/media", files={"file": ("封面.jpg", b"\xff\xd8\xff\xe0jpeg", "image/jpeg")})
    assert multi.status_code == 201 and multi.json()["mime_type"] == "image/jpeg"
    assert raw.json()["id"] != multi.json()["id"]
    no_name = api.post("/media", content=SAMPLE_PNG, headers={"Content-Type": "image/png"})
    assert no_name.json()["code"] == "rest_upload_no_content_disposition"
    empty = api.post("/media", content=b"", headers={"Content-Disposition": "attachment; filename=a.png"})
    assert empty.json()["code"] == "rest_upload_no_data"
    exe = api.post("/media", files={"file": ("x.php", b"<?php", "image/png")})
    assert exe.status_code == 500 and exe.json()["code"] == "rest_upload_sideload_error"
    post = create(api, featured_media=raw.json()["id"]).json()
    assert raw.json()["source_url"] in httpx.get(post["link"]).text


def test_comments_accrue_on_the_fake_clock(sb: SandboxControl, api: httpx.Client) -> None:
    post = create(api).json()
    other = create(api).json()
    count = api.get("/comments", params={"post": post["id"], "per_page": 1})
    assert count.headers["x-wp-total"] == "0" and count.json() == []
    sb.advance(COMMENT_EVERY_S * 3 + 1)
    count = api.get("/comments", params={"post": post["id"], "per_page": 1})
    assert count.headers["x-wp-total"] == "3" and len(count.json()) == 1
    assert count.json()[0]["post"] == post["id"]
    both = api.get("/comments", params={"post": f"{post['id']},{other['id']}", "per_page": 100})
    assert both.headers["x-wp-total"] == "6"
    api.delete(f"/posts/{post['id']}")
    assert api.get("/comments", params={"post": post["id"]}).headers["x-wp-total"] == "0"


def test_published_post_is_an_html_page(sb: SandboxControl, api: httpx.Client) -> None:
    post = create(api, title="<b>标题</b> & 更多", content="<p>第一段</p>").json()
    page = httpx.get(post["link"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "&lt;b&gt;标题&lt;/b&gt; &amp; 更多" in page.text and "<p>第一段</p>" in page.text
    home = httpx.get(f"{sb.url}/demo/")
    assert f"?p={post['id']}" in home.text


# ---------------------------------------------------------------------------------- control API, knobs


def test_state_and_reset(sb: SandboxControl, api: httpx.Client) -> None:
    create(api, slug="mm-1")
    state = sb.state()["sites"]
    assert [p["slug"] for p in state["demo"]["posts"]] == ["mm-1"]
    assert state["demo"]["calls"]["posts.create"] == 1
    assert set(state) >= {"demo", "news"}
    sb.add_account(site="extra", username="u", role="author")
    sb.reset()
    state = sb.state()["sites"]
    assert state["demo"]["posts"] == [] and "extra" not in state
    assert api.get("/users/me").status_code == 200  # demo accounts come back


def test_add_account_generates_a_password(sb: SandboxControl) -> None:
    account = sb.add_account(site="site-2", username="bot", role="editor")
    assert account["base_url"] == "/wp/site-2" and len(account["app_password"].replace(" ", "")) == 24
    me = httpx.get(f"{sb.url}/site-2/wp-json/wp/v2/users/me", auth=("bot", account["app_password"]))
    assert me.status_code == 200
    bad = sb.http.post("/accounts", json={"site": "x", "username": "y", "role": "overlord"})
    assert bad.status_code == 400


def test_scripted_faults_count_down_and_match_method(sb: SandboxControl, api: httpx.Client) -> None:
    sb.faults(path="/posts", method="POST", status=503, times=2)
    assert api.get("/posts").status_code == 200  # GET does not match
    assert [create(api).status_code for _ in range(3)] == [503, 503, 201]
    assert sb.faults()["injected"] == 2 and sb.faults()["scripted"] == []


def test_fault_renderings(sb: SandboxControl, api: httpx.Client) -> None:
    sb.faults(faults=[{"path": "/posts", "status": 429, "retry_after": 2.5}, {"path": "/posts", "status": 502}])
    limited = api.get("/posts")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"  # rounded up
    assert limited.headers["content-type"].startswith("text/html")
    assert api.get("/posts").status_code == 502
    sb.faults(path="/posts", status=401)
    assert api.get("/posts").json()["code"] == "incorrect_password"
    sb.faults(path="/posts", status=503)
    assert api.get("/posts").json()["code"] == "wp_die"
    sb.faults(path="/posts", status=418, code="acme_custom", message="teapot")
    teapot = api.get("/posts")
    assert teapot.status_code == 418 and teapot.json() == {
        "code": "acme_custom",
        "message": "teapot",
        "data": {"status": 418},
    }


def test_drop_after_commit_keeps_the_effect(sb: SandboxControl, api: httpx.Client) -> None:
    sb.faults(path="/posts", method="POST", drop_after_commit=True)
    with pytest.raises(httpx.RemoteProtocolError):
        create(api, slug="mm-9")
    assert [p["slug"] for p in sb.state()["sites"]["demo"]["posts"]] == ["mm-9"]


def test_error_rate_is_seeded_and_latency_applies(sb: SandboxControl, api: httpx.Client) -> None:
    sb.faults(error_rate=0.5, seed=42)
    first = [api.get("/posts").status_code for _ in range(20)]
    sb.faults(clear=True, error_rate=0.5, seed=42)
    assert [api.get("/posts").status_code for _ in range(20)] == first
    assert set(first) == {200, 503}
    sb.faults(clear=True, latency_ms=150)
    started = time.perf_counter()
    api.get("/posts")
    assert time.perf_counter() - started >= 0.15
    sb.faults(clear=True, path="/news/", latency_ms=300, times=-1)  # one site slowed, not the others
    assert sb.faults()["latency_ms"] == 0
    started = time.perf_counter()
    api.get("/posts")
    assert time.perf_counter() - started < 0.3
    started = time.perf_counter()
    httpx.get(f"{sb.url}/news/wp-json/wp/v2/posts")
    assert time.perf_counter() - started >= 0.3
    sb.faults(clear=True)
    assert sb.http.get("/state").status_code == 200  # the control API is never faulted


def test_bad_knobs_are_refused(sb: SandboxControl) -> None:
    assert sb.http.post("/faults", json={"path": "x", "status": 500, "times": 0}).status_code == 400
    assert sb.http.post("/faults", json={"error_rate": 2}).status_code == 400
    assert sb.http.post("/faults", json={"path": "x", "status": "boom"}).status_code == 400
    assert sb.http.post("/clock/advance", json={"seconds": -5}).status_code == 400
    assert sb.http.post("/faults", content=b"[1]").status_code == 400


def test_clock_advances(sb: SandboxControl) -> None:
    before = sb.http.get("/clock").json()["now"]
    after = sb.advance(86_400)["now"]
    assert after - before >= 86_400


# ---------------------------------------------------------------------------------- combined app, server


def test_combined_app_index_and_demo_accounts(sandbox_server: RunningServer) -> None:
    index = httpx.get(sandbox_server.url + "/")
    for prefix, _target in SANDBOXES.values():
        assert prefix in index.text
    accounts = demo_accounts("http://127.0.0.1:8100/")
    website = [a for a in accounts if a["kind"] == "website"]
    assert website and website[0]["config"]["base_url"] == "http://127.0.0.1:8100/wp/demo"
    assert website[0]["credentials"]["app_password"] == DEMO_PASSWORD


def test_serve_in_thread_picks_a_port_and_stops() -> None:
    server = serve_in_thread(create_app())
    try:
        assert server.port > 0 and httpx.get(server.url + "/").status_code == 200
    finally:
        server.stop()
    assert not server.alive
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/")
