"""An admin's pages (issue 11, items 1 and 6): users, policies, and accounts with their quota used and
re-authorisation in place — over the same read models as the API, credentials never shown back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.clock import now
from core.db import session_scope
from publisher import services
from publisher.domain.models import Account, Delivery
from publisher.interfaces.api import app
from tests.support.people import CITY, SYSTEM, Person, make_user, password_of

SECRET = "weibo-token-that-must-never-show"


@pytest.fixture()
def people(env: Path, rules_only: None) -> dict[str, Person]:
    return {"admin": make_user("admin", ("admin", CITY)), "editor": make_user("editor", ("editor", CITY))}


@pytest.fixture()
def weibo(people: dict[str, Person]) -> int:
    with session_scope() as s:
        account = services.add_account(
            s,
            SYSTEM,
            kind="weibo",
            name="市总工会微博",
            credentials={"access_token": SECRET, "uid": "1"},
            config={"base_url": "http://127.0.0.1:9/weibo", "safe_domain": "127.0.0.1", "rip": "127.0.0.1"},
            organization=CITY,
        )
        account.status, account.status_reason = "needs_reauth", "the token expired"
        return account.id


@pytest.fixture()
def client(people: dict[str, Person]) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def sign_in(client: TestClient, name: str) -> dict[str, str]:
    client.cookies.clear()
    r = client.post("/login", data={"name": name, "password": password_of(name)}, follow_redirects=False)
    assert r.status_code == 303
    return {"X-CSRF-Token": client.cookies.get("mm_csrf")}


def test_the_admin_home_leads_to_users_accounts_and_policies(client: TestClient, people) -> None:
    sign_in(client, "admin")
    home = client.get("/").text
    assert 'data-testid="admin-home"' in home
    for page in ("/ui/users", "/ui/policies", "/ui/accounts"):
        assert f'href="{page}"' in home
        assert client.get(page).status_code == 200, page
    users = client.get("/ui/users").text
    assert 'data-testid="user-editor"' in users and "editor @ " in users
    policies = client.get("/ui/policies").text
    assert 'data-form="chain"' in policies and 'data-form="term-add"' in policies


def test_an_editor_gets_a_403_page_for_the_admin_pages(client: TestClient, people) -> None:
    sign_in(client, "editor")
    for page in ("/ui/users", "/ui/policies"):
        r = client.get(page)
        assert r.status_code == 403 and 'data-testid="error-message"' in r.text, page
    assert 'href="/ui/users"' not in client.get("/").text


def test_policies_and_terms_are_read_models_the_api_serves_too(client: TestClient, people) -> None:
    admin = people["admin"]
    with session_scope() as s:
        city = services.find_organization(s, CITY).id
    r = client.post(f"/organizations/{city}/terms", headers=admin.headers, json={"term": "某某词", "list": "deny"})
    assert r.status_code == 201, r.text
    assert client.get(f"/organizations/{city}/terms", headers=admin.headers).json() == [
        {"term": "某某词", "list": "deny", "category": "custom", "severity": "review"}
    ]
    rows = client.get("/policies", headers=admin.headers).json()
    assert [r["name"] for r in rows] == [CITY, *[r["name"] for r in rows[1:]]]  # the admin's subtree, city first
    assert rows[0]["terms"][0]["term"] == "某某词" and rows[0]["review_chain"]["chain"]["steps"]
    sign_in(client, "admin")
    assert "某某词" in client.get("/ui/policies").text
    assert client.get("/policies", headers=people["editor"].headers).status_code == 403


def test_accounts_show_quota_used_and_are_reauthorised_in_place(client: TestClient, people, weibo: int) -> None:
    with session_scope() as s:
        post = services.create_post(s, SYSTEM, title="t", body="b", accounts=[weibo], submit=False)
        s.flush()
        s.add(Delivery(post_id=post.id, account_id=weibo, version_id=post.current_version_id, state="published",
                       claimed_at=now() - timedelta(minutes=10)))  # fmt: skip
    headers = sign_in(client, "admin")
    page = client.get("/ui/accounts").text
    assert "1/30" in page  # Weibo's 30 posts an hour, one used
    assert f'data-reauth="{weibo}"' in page and 'name="access_token"' in page and 'name="uid"' in page
    assert SECRET not in page  # credentials are never shown back
    r = client.post(f"/accounts/{weibo}/reauthorize?check=false", json={"access_token": "new", "uid": "1"},
                    headers=headers)  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "active"
    with session_scope() as s:
        assert s.get(Account, weibo).status == "active"
    sign_in(client, "editor")
    assert f'data-reauth="{weibo}"' not in client.get("/ui/accounts").text  # an editor may not re-authorise
