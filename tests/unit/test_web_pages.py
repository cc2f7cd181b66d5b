"""The web application's pages without a browser: signing in by the form, the anonymous sent to it, each page
rendering for the roles that use it (server-side, so with JavaScript off too), another city's post a 403 page,
and nothing loaded from outside this server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.db import session_scope
from publisher import services
from publisher.domain.models import Screening
from publisher.interfaces.api import app
from tests.support.people import CITY, NEIGHBOUR, SYSTEM, Person, make_user, password_of

PAGES = ["/", "/ui/posts", "/ui/review", "/ui/compose", "/ui/accounts", "/ui/notifications"]


@pytest.fixture()
def people(env: Path, rules_only: None) -> dict[str, Person]:
    return {
        "editor": make_user("editor", ("editor", CITY)),
        "reviewer": make_user("reviewer", ("reviewer", CITY)),
        "neighbour": make_user("neighbour", ("editor", NEIGHBOUR), ("reviewer", NEIGHBOUR)),
    }


@pytest.fixture()
def accounts(people: dict[str, Person]) -> dict[str, int]:
    with session_scope() as s:
        return {
            org: services.add_account(s, SYSTEM, kind="manual", name=f"{org}号", credentials={}, organization=org).id
            for org in (CITY, NEIGHBOUR)
        }


@pytest.fixture()
def client(people: dict[str, Person]) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def sign_in(client: TestClient, person: Person) -> None:
    r = client.post(
        "/login",
        data={"name": person.principal.name, "password": password_of(person.principal.name), "next": "/ui/posts"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/posts"
    assert client.cookies.get("mm_session") and client.cookies.get("mm_csrf")


def test_the_anonymous_are_sent_to_the_sign_in_form_and_a_wrong_password_says_so(client: TestClient, people) -> None:
    r = client.get("/ui/posts", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/ui/posts"
    form = client.get("/login")
    assert form.status_code == 200 and 'name="password"' in form.text and "登录" in form.text
    r = client.post("/login", data={"name": "editor", "password": "wrong-password"})
    assert r.status_code == 401 and 'data-testid="login-error"' in r.text
    r = client.post(
        "/login",
        data={"name": "editor", "password": password_of("editor"), "next": "//evil.example"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"  # no open redirect
    assert client.get("/posts").status_code == 200  # the API with the cookie, for reading


def test_every_page_renders_for_its_people_in_chinese_and_english(client: TestClient, people, accounts) -> None:
    sign_in(client, people["editor"])
    for page in PAGES:
        r = client.get(page)
        assert r.status_code == 200, (page, r.text[:300])
        assert '<script src="/static/app.js"' in r.text
    assert "Sign out" in client.get("/ui/posts?lang=en").text
    assert "Sign out" in client.get("/").text  # the choice is remembered
    assert "退出" in client.get("/?lang=zh").text


def test_a_changing_call_from_a_page_needs_the_csrf_secret(client: TestClient, people, accounts) -> None:
    sign_in(client, people["editor"])
    body = {"title": "通知", "body": "工会开展职工技能培训。", "accounts": [accounts[CITY]]}
    assert client.post("/posts", json=body).status_code == 403
    r = client.post("/posts", json=body, headers={"X-CSRF-Token": client.cookies.get("mm_csrf")})
    assert r.status_code == 201


def test_the_post_page_marks_hits_and_another_citys_post_is_a_403_page(client: TestClient, people, accounts) -> None:
    with session_scope() as s:
        post = services.create_post(
            s, people["editor"].principal, title="通知", body="联系电话13812345678。", accounts=[accounts[CITY]]
        )
        s.flush()
        verdict = {
            "decision": "review",
            "hits": [
                {"category": "pii", "source": "pii", "start": 7, "end": 18, "text": "13812345678", "severity": "review"}
            ],
        }
        s.add(Screening(version_id=post.current_version_id, decision="review", verdict=verdict))
        post.state = "needs_review"
        post_id = post.id
    sign_in(client, people["reviewer"])
    page = client.get(f"/ui/posts/{post_id}")
    assert page.status_code == 200
    assert re.search(r'<mark class="c-pii" title="pii">13812345678</mark>', page.text)
    assert 'data-decide="approve"' in page.text
    assert f"/ui/posts/{post_id}" in client.get("/ui/review").text
    client.cookies.clear()
    sign_in(client, people["neighbour"])
    other = client.get(f"/ui/posts/{post_id}")
    assert other.status_code == 403 and 'data-testid="error-message"' in other.text
    assert client.get("/ui/posts/99999").status_code == 404


def test_previews_come_from_the_adapters_renderers(client: TestClient, people, accounts) -> None:
    sign_in(client, people["editor"])
    r = client.post(
        "/ui/preview",
        json={"title": "标题", "body": "# 小标题\n\n正文 **加粗**", "accounts": [accounts[CITY]]},
        headers={"X-CSRF-Token": client.cookies.get("mm_csrf")},
    )
    assert r.status_code == 200 and "<strong>加粗</strong>" in r.text


def test_nothing_is_loaded_from_another_host(client: TestClient, people) -> None:
    sign_in(client, people["editor"])
    for page in [*PAGES, "/docs", "/login"]:
        html = client.get(page).text
        for url in re.findall(r'(?:src|href)=["\']([^"\']+)', html) + re.findall(
            r'_url["\']?\s*[:=]\s*["\']([^"\']+)', html
        ):
            assert not re.match(r"(?i)(https?:)?//", url), (page, url)
    docs = client.get("/docs").text
    assert "/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js" in docs
    assert client.get("/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js").status_code == 200
    client.cookies.clear()
    assert client.get("/static/app.css").status_code == 200  # public: nothing of anyone's
    assert client.get("/docs").status_code == 401


def test_the_audit_page_filters_for_admins_only(client: TestClient, people, accounts) -> None:
    admin = make_user("admin", ("admin", CITY))
    sign_in(client, people["editor"])
    assert client.get("/ui/audit").status_code == 403
    client.cookies.clear()
    sign_in(client, admin)
    page = client.get("/ui/audit", params={"action": "account.add"})
    assert page.status_code == 200 and page.text.count("account.add") >= 2
    assert "user.create" not in page.text
    assert client.get("/ui/audit", params={"object_id": "x" * 30}).status_code == 200  # ignored, not a 500
