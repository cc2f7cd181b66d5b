"""People (issue 9): nobody anonymous gets past sign-in, roles are scoped to the organisation tree, and the review
chain is enforced in the services — self-approval, double-step approval and stale approvals refused at every
step, an edit restarting the chain, an override of an automatic reject — whichever interface asks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.routing import Mount

from core.db import session_scope
from core.errors import Forbidden, NotFound, Unauthenticated
from publisher import services
from publisher.domain.models import ModerationTerm, Organization, Post, ReviewDecision, Screening
from publisher.interfaces.api import app
from publisher.services.people import MAX_FAILED_SIGN_INS, LockedOut
from tests.support.people import CITY, DISTRICT, NEIGHBOUR, PROVINCE, SYSTEM, Person, make_user, password_of
from tests.support.routes import all_routes

# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture()
def people(env: Path, rules_only: None) -> dict[str, Person]:
    """The matrix's people: a province admin, editors and reviewers of a city and of its neighbour, a monitor."""
    return {
        "admin": make_user("admin", ("admin", PROVINCE)),
        "city_admin": make_user("city_admin", ("admin", CITY)),
        "editor": make_user("editor", ("editor", CITY)),
        "district_editor": make_user("district_editor", ("editor", DISTRICT)),
        "reviewer": make_user("reviewer", ("reviewer", CITY)),
        "province_reviewer": make_user("province_reviewer", ("reviewer", PROVINCE)),
        "neighbour_reviewer": make_user("neighbour_reviewer", ("reviewer", NEIGHBOUR)),
        "monitor": make_user("monitor", ("monitor", PROVINCE)),
    }


@pytest.fixture()
def accounts(people: dict[str, Person]) -> dict[str, int]:
    """One assisted (manual) account per organisation, made by the system."""
    with session_scope() as s:
        return {
            org: services.add_account(s, SYSTEM, kind="manual", name=f"{org}号", credentials={}, organization=org).id
            for org in (PROVINCE, CITY, DISTRICT, NEIGHBOUR)
        }


@pytest.fixture()
def client(people: dict[str, Person]) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _post(person: Person, account: int, body: str = "工会开展职工技能培训。", title: str = "通知") -> int:
    with session_scope() as s:
        return services.create_post(s, person.principal, title=title, body=body, accounts=[account], submit=False).id


def _to_review(post_id: int, decision: str = "review") -> None:
    """Put a post where screening would (without a worker): screened with ``decision``."""
    with session_scope() as s:
        post = s.get(Post, post_id)
        services.submit_post(s, SYSTEM, post_id)
        s.add(
            Screening(version_id=post.current_version_id, decision=decision, verdict={"decision": decision, "hits": []})
        )
        s.flush()
        post.state = {"review": "needs_review", "reject": "rejected"}[decision]


def _state(post_id: int) -> str:
    with session_scope() as s:
        return s.get(Post, post_id).state


# ------------------------------------------------------------------------------------ sign-in walls


def _sample_path(route: APIRoute) -> str:
    return re.sub(r"\{[^}]+\}", "1", route.path)


def test_anonymous_clients_reach_only_health_and_sign_in(client: TestClient) -> None:
    public = {("GET", "/health"), ("POST", "/auth/login"), ("GET", "/login"), ("POST", "/login")}
    walked = 0
    for route in all_routes(app):
        if isinstance(route, Mount):  # the pages' static files: stylesheets, scripts, vendored libraries
            assert route.path == "/static"
            continue
        methods = getattr(route, "methods", None) or {"GET"}
        for method in methods - {"HEAD", "OPTIONS"}:
            path = _sample_path(route) if isinstance(route, APIRoute) else route.path  # type: ignore[attr-defined]
            answer = client.request(method, path, json={}, follow_redirects=False)
            walked += 1
            if (method, route.path) == ("POST", "/login"):  # the form, again, saying the sign-in failed
                assert 'data-testid="login-error"' in answer.text
            elif (method, route.path) in public:  # type: ignore[attr-defined]
                assert answer.status_code != 401, (method, path)
            elif method == "GET" and (path == "/" or path.startswith("/ui/")):  # a page: to the sign-in form
                assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
            else:
                assert answer.status_code == 401, (method, path, answer.status_code)
                assert "sign in" in answer.json()["detail"]
    assert walked >= 60  # every API route, the monitor's and the pages', /docs and /openapi.json included
    assert client.get("/docs").status_code == 401 and client.get("/openapi.json").status_code == 401
    assert client.get("/static/app.js").status_code == 200


def test_a_bad_or_revoked_token_is_401_with_the_reason(client: TestClient, people: dict[str, Person]) -> None:
    assert client.get("/posts", headers={"Authorization": "Bearer mm_nonsense"}).status_code == 401
    assert "Bearer" in client.get("/posts", headers={"Authorization": "Basic abc"}).json()["detail"]
    editor = people["editor"]
    assert client.get("/auth/me", headers=editor.headers).json()["name"] == "editor"
    tokens = client.get("/auth/tokens", headers=editor.headers).json()
    client.delete(f"/auth/tokens/{tokens[0]['id']}", headers=editor.headers)
    answer = client.get("/posts", headers=editor.headers)
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]


def test_web_sign_in_sets_a_cookie_and_changing_requests_need_the_csrf_secret(
    client: TestClient, accounts: dict[str, int]
) -> None:
    signed = client.post("/auth/login", json={"name": "editor", "password": password_of("editor")})
    assert signed.status_code == 200
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    csrf = signed.json()["csrf_token"]
    assert client.get("/auth/me").json()["name"] == "editor"  # a read: the cookie alone
    body = {"title": "通知", "body": "正文", "accounts": [accounts[CITY]]}
    refused = client.post("/posts", json=body)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    assert client.post("/posts", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201
    client.post("/auth/logout", headers={"X-CSRF-Token": csrf})
    assert client.get("/auth/me").status_code == 401


def test_failed_sign_ins_lock_the_user_out_and_say_until_when(client: TestClient, people: dict[str, Person]) -> None:
    for _ in range(MAX_FAILED_SIGN_INS - 1):
        answer = client.post("/auth/login", json={"name": "editor", "password": "wrong password"})
        assert answer.status_code == 401 and answer.json()["detail"] == "wrong user name or password"
    locked = client.post("/auth/login", json={"name": "editor", "password": "wrong password"})
    assert locked.status_code == 429 and "try again after" in locked.json()["detail"]
    # the right password does not help while locked
    again = client.post("/auth/login", json={"name": "editor", "password": password_of("editor")})
    assert again.status_code == 429
    with pytest.raises(LockedOut):
        services.sign_in("editor", password_of("editor"))
    # an unknown name says the same as a wrong password: names cannot be probed
    assert client.post("/auth/login", json={"name": "nobody", "password": "x" * 12}).json()["detail"] == (
        "wrong user name or password"
    )


def test_bodies_name_no_actor_and_errors_are_one_line(client: TestClient, people: dict[str, Person], accounts) -> None:
    h = people["editor"].headers
    answer = client.post(
        "/posts", json={"title": "t", "body": "b", "accounts": [accounts[CITY]], "author": "x"}, headers=h
    )
    assert answer.status_code == 422 and answer.json()["detail"] == "unknown field 'author'"
    answer = client.post("/posts", json={"title": "t", "body": "b", "accounts": [1], "scheduled_at": "now"}, headers=h)
    assert answer.json()["detail"] == "unknown field 'scheduled_at'"  # was silently dropped: 201 without a schedule
    answer = client.post("/posts", json={"body": "b", "accounts": [1]}, headers=h)
    assert answer.json()["detail"] == "title is required"
    assert client.get("/posts?limit=-1", headers=h).status_code == 422
    assert "unknown post state" in client.get("/posts?state=bogus", headers=h).json()["detail"]


# ------------------------------------------------------------------ role × action × organisation scope

MATRIX = [
    # person, action, organisation, allowed
    ("editor", "post.write", CITY, True),
    ("editor", "post.write", DISTRICT, True),  # the city's subtree
    ("editor", "post.write", PROVINCE, False),  # not above
    ("editor", "post.write", NEIGHBOUR, False),  # not beside
    ("district_editor", "post.write", CITY, False),
    ("reviewer", "post.review", CITY, True),
    ("reviewer", "post.review", DISTRICT, True),
    ("reviewer", "post.review", NEIGHBOUR, False),
    ("reviewer", "post.write", CITY, False),  # a reviewer writes nothing
    ("province_reviewer", "post.review", NEIGHBOUR, True),
    ("neighbour_reviewer", "post.review", CITY, False),
    ("monitor", "post.view", DISTRICT, True),
    ("monitor", "post.write", CITY, False),
    ("monitor", "post.review", CITY, False),
    ("editor", "policy.manage", CITY, False),  # term lists and chains: admins only
    ("reviewer", "policy.manage", CITY, False),
    ("city_admin", "policy.manage", CITY, True),
    ("city_admin", "policy.manage", PROVINCE, False),
    ("admin", "policy.manage", NEIGHBOUR, True),
    ("city_admin", "account.manage", DISTRICT, True),
    ("editor", "account.manage", CITY, False),
    ("city_admin", "user.manage", NEIGHBOUR, False),
    ("editor", "audit.view", CITY, False),
    ("admin", "audit.view", PROVINCE, True),
]


@pytest.mark.parametrize(("who", "action", "org", "allowed"), MATRIX, ids=lambda v: str(v))
def test_role_action_scope(people: dict[str, Person], who: str, action: str, org: str, allowed: bool) -> None:
    with session_scope() as s:
        org_id = s.scalar(select(Organization.id).where(Organization.name == org))
        if allowed:
            services.require(s, people[who].principal, action, org_id)
        else:
            with pytest.raises(Forbidden, match=f"may not .* in {org}: that takes"):
                services.require(s, people[who].principal, action, org_id)


def test_lists_show_only_the_subtree(people: dict[str, Person], accounts: dict[str, int]) -> None:
    city_post = _post(people["editor"], accounts[CITY])
    district_post = _post(people["district_editor"], accounts[DISTRICT])
    with session_scope() as s:
        seen = {p["id"] for p in services.post_rows(s, people["neighbour_reviewer"].principal)}
        assert not seen & {city_post, district_post}
        assert {p["id"] for p in services.post_rows(s, people["reviewer"].principal)} >= {city_post, district_post}
        assert [p["id"] for p in services.post_rows(s, people["district_editor"].principal)] == [district_post]
        names = {a["name"] for a in services.account_rows(s, people["editor"].principal)}
        assert names == {f"{CITY}号", f"{DISTRICT}号"}
        with pytest.raises(NotFound):  # another city's post is not there for them
            services.post_detail(s, people["neighbour_reviewer"].principal, city_post)


def test_an_editor_cannot_post_to_a_neighbours_account(people: dict[str, Person], accounts: dict[str, int]) -> None:
    with pytest.raises(Forbidden, match=f"in {NEIGHBOUR}"):
        _post(people["editor"], accounts[NEIGHBOUR])


def test_the_allow_list_attack_is_refused_for_a_non_admin(client: TestClient, people: dict[str, Person]) -> None:
    with session_scope() as s:
        city = s.scalar(select(Organization.id).where(Organization.name == CITY))
    for who in ("editor", "reviewer", "monitor"):
        answer = client.post(
            f"/organizations/{city}/terms", json={"term": "傻逼", "list": "allow"}, headers=people[who].headers
        )
        assert answer.status_code == 403 and "change moderation lists" in answer.json()["detail"]
    ok = client.post(
        f"/organizations/{city}/terms", json={"term": "工会", "list": "allow"}, headers=people["city_admin"].headers
    )
    assert ok.status_code == 201


def test_notifications_are_ones_own(client: TestClient, people: dict[str, Person]) -> None:
    from core.notify import notify

    with session_scope() as s:
        notify(s, [people["admin"].principal.user_id], "note", "for the admin only")
    # ``?user=`` named whose notifications to read (and mark); now it is nobody's but the caller's
    assert client.get("/notifications?user=admin", headers=people["editor"].headers).json() == []
    mine = client.get("/notifications", headers=people["admin"].headers).json()
    assert [n["message"] for n in mine] == ["for the admin only"]
    other = client.post(f"/notifications/{mine[0]['id']}/read", headers=people["editor"].headers)
    assert other.status_code == 404


# --------------------------------------------------------------------------------------- review chain

THREE_STEPS = {
    "applies": "flagged",
    "steps": [
        {"name": "初审", "role": "reviewer", "at": "own"},
        {"name": "复审", "role": "reviewer", "at": "parent"},
        {"name": "终审", "role": "admin", "at": "root"},
    ],
}


def _set_chain(people: dict[str, Person], org: str, chain: dict[str, Any] | None) -> None:
    with session_scope() as s:
        services.set_review_chain(s, people["admin"].principal, org, chain)


def _approve(person: Person, post_id: int) -> None:
    with session_scope() as s:
        services.review(s, person.principal, post_id, approve=True)


def test_one_step_nobody_approves_their_own_post(people: dict[str, Person], accounts: dict[str, int]) -> None:
    both = make_user("both", ("editor", CITY), ("reviewer", CITY))
    post = _post(both, accounts[CITY])
    _to_review(post)
    with pytest.raises(Forbidden, match="nobody approves their own post"):
        _approve(both, post)
    with pytest.raises(Forbidden, match="may not review posts"):
        _approve(people["neighbour_reviewer"], post)
    _approve(people["reviewer"], post)
    assert _state(post) == "approved"


def test_three_steps_by_three_people_of_the_right_organisations(people, accounts) -> None:
    _set_chain(people, PROVINCE, THREE_STEPS)  # inherited by the city and its district
    post = _post(people["district_editor"], accounts[DISTRICT])
    _to_review(post)
    with pytest.raises(Forbidden, match=f"may not review posts in {DISTRICT}"):
        _approve(people["neighbour_reviewer"], post)
    _approve(people["reviewer"], post)  # 初审: a reviewer of the district (the city's covers it)
    assert _state(post) == "needs_review"
    with pytest.raises(Forbidden, match=r"approved a step of post \d+ already"):
        _approve(people["reviewer"], post)  # nobody approves two steps
    with pytest.raises(Forbidden, match="复审"):
        _approve(make_user("district_reviewer", ("reviewer", DISTRICT)), post)  # not the parent's
    _approve(people["province_reviewer"], post)  # 复审: the parent (the city) or above
    with pytest.raises(Forbidden, match="终审"):
        _approve(make_user("r3", ("reviewer", PROVINCE)), post)  # 终审 takes an admin
    _approve(people["admin"], post)
    assert _state(post) == "approved"
    with session_scope() as s:
        progress = services.chain_progress(s, s.get(Post, post))
    assert [step["approved_by"] for step in progress["steps"]] == ["reviewer", "province_reviewer", "admin"]


def test_an_edit_mid_chain_restarts_it(people, accounts) -> None:
    _set_chain(people, PROVINCE, THREE_STEPS)
    post = _post(people["editor"], accounts[CITY])
    _to_review(post)
    _approve(people["reviewer"], post)
    with session_scope() as s:
        services.edit_post(s, people["editor"].principal, post, body="改过的正文。")
    _to_review_again(post)
    with session_scope() as s:
        progress = services.chain_progress(s, s.get(Post, post))
    assert progress["current_step"] == 0 and all(st["approved_by"] is None for st in progress["steps"])
    with session_scope() as s, pytest.raises(Exception, match="changed since you read it"):
        services.review(s, people["reviewer"].principal, post, approve=True, content_hash="0" * 64)
    _approve(people["reviewer"], post)  # 初审 again, on the new version: allowed, the chain restarted


def _to_review_again(post_id: int) -> None:
    with session_scope() as s:
        post = s.get(Post, post_id)
        s.add(
            Screening(version_id=post.current_version_id, decision="review", verdict={"decision": "review", "hits": []})
        )
        post.state = "needs_review"


def test_a_wechat_post_always_takes_its_channel_chain(people) -> None:
    chain = {"applies": "flagged", "steps": [{"name": "审核", "role": "reviewer", "at": "own"}],
             "channels": {"manual": THREE_STEPS | {"applies": "always"}}}  # fmt: skip
    _set_chain(people, PROVINCE, chain)
    with session_scope() as s:
        account = services.add_account(
            s, SYSTEM, kind="manual", name="公众号（人工）", credentials={}, organization=CITY
        )
        post = services.create_post(
            s, people["editor"].principal, title="t", body="b", accounts=[account.id], submit=False
        )
        applied = services.chain_for(s, post)
    assert applied.always and len(applied.steps) == 3


def test_override_of_an_automatic_reject_is_recorded_with_its_reason(people, accounts) -> None:
    post = _post(people["editor"], accounts[CITY], body="工会干部打工人福利")
    _to_review(post, "reject")
    with session_scope() as s, pytest.raises(Exception, match="needs a reason"):
        services.override(s, people["reviewer"].principal, post, reason=" ")
    with session_scope() as s, pytest.raises(Forbidden):
        services.override(s, people["editor"].principal, post, reason="误判")
    with session_scope() as s:
        services.override(s, people["reviewer"].principal, post, reason="误判：正常的福利通知")
    assert _state(post) == "approved"  # the one-step chain: the override was its step
    with session_scope() as s:
        decision = s.scalar(select(ReviewDecision).where(ReviewDecision.post_id == post))
        assert (decision.decision, decision.reviewer, decision.reason) == (
            "override",
            "reviewer",
            "误判：正常的福利通知",
        )
    with session_scope() as s, pytest.raises(Exception, match="not rejected by screening"):
        services.override(s, people["province_reviewer"].principal, post, reason="again")


def test_a_reject_needs_a_reason_and_tells_the_author(people, accounts) -> None:
    post = _post(people["editor"], accounts[CITY])
    _to_review(post)
    with session_scope() as s, pytest.raises(Exception, match="needs a reason"):
        services.review(s, people["reviewer"].principal, post, approve=False, reason="")
    with session_scope() as s:
        services.review(s, people["reviewer"].principal, post, approve=False, reason="标题有错字")
    with session_scope() as s:
        mine = services.notification_rows(s, people["editor"].principal)
    assert any("标题有错字" in n["message"] and n["kind"] == "post_rejected" for n in mine)


def test_a_user_disabled_loses_every_token(client: TestClient, people: dict[str, Person]) -> None:
    with session_scope() as s:
        services.disable_user(s, people["admin"].principal, "editor")
    assert client.get("/auth/me", headers=people["editor"].headers).status_code == 401
    with pytest.raises(Unauthenticated):
        services.sign_in("editor", password_of("editor"))


# ------------------------------------------------------------------------------- the editor's dead ends


def test_cancel_a_schedule_delete_a_draft_duplicate_a_post(client: TestClient, people, accounts) -> None:
    h = people["editor"].headers
    draft = _post(people["editor"], accounts[CITY])
    assert client.delete(f"/posts/{draft}", headers=people["reviewer"].headers).status_code == 403
    assert client.delete(f"/posts/{draft}", headers=h).json() == {"id": draft, "deleted": True}
    assert client.get(f"/posts/{draft}", headers=h).status_code == 404
    post = _post(people["editor"], accounts[CITY])
    _to_review(post)
    assert client.delete(f"/posts/{post}", headers=h).status_code == 409  # past draft: never deleted
    _approve(people["reviewer"], post)
    assert (
        client.post(f"/posts/{post}/schedule", json={"at": "2099-01-01 09:00"}, headers=h).json()["state"]
        == "scheduled"
    )
    assert client.post(f"/posts/{post}/unschedule", headers=h).json()["state"] == "approved"
    assert client.post(f"/posts/{post}/unschedule", headers=h).status_code == 409
    copy = client.post(f"/posts/{post}/duplicate", headers=h).json()
    assert copy["state"] == "draft" and copy["id"] != post


# ---------------------------------------------------------------------------------- reviewer feedback


def _screened(post_id: int, decision: str, hits: list[dict[str, Any]]) -> None:
    with session_scope() as s:
        post = s.get(Post, post_id)
        services.submit_post(s, SYSTEM, post_id)
        s.add(
            Screening(
                version_id=post.current_version_id, decision=decision, verdict={"decision": decision, "hits": hits}
            )
        )
        s.flush()
        post.state = {"review": "needs_review", "reject": "rejected", "pass": "approved"}[decision]


def test_overrides_become_examples_and_an_allow_list_proposal(people, accounts, tmp_path: Path) -> None:
    from moderation.dataset import MODEL_CATEGORIES, load_feedback

    hit = {"category": "abuse", "term": "打工人", "list": "deny", "start": 0, "end": 3, "text": "打工人"}
    for n in range(3):
        post = _post(people["editor"], accounts[CITY], body=f"打工人技能比武第{n}场")
        _screened(post, "reject" if n == 0 else "review", [hit])
        with session_scope() as s:
            if n == 0:
                services.override(s, people["reviewer"].principal, post, reason="打工人是职工的自称")
            else:
                services.review(s, people["reviewer"].principal, post, approve=True, reason="正常")
    missed = _post(people["editor"], accounts[CITY], body="加微信领兼职日结")
    _screened(missed, "pass", [])
    with session_scope() as s:
        services.review(s, people["reviewer"].principal, missed, approve=False, reason="刷单广告", category="ads")
    with session_scope() as s:
        with pytest.raises(Forbidden):
            services.proposals(s, people["reviewer"].principal)
        proposed = services.proposals(s, people["city_admin"].principal)
        lines = list(services.export_lines(s, people["admin"].principal))
    assert [(p["term"], p["overrides"]) for p in proposed] == [("打工人", 3)]
    path = tmp_path / "feedback.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    examples, skipped = load_feedback(path)
    assert skipped == 0 and len(examples) == 4
    assert [e.target() for e in examples[:3]] == [[0.0] * len(MODEL_CATEGORIES)] * 3  # harmless, as reviewers said
    assert examples[3].labels["ads"] == 1 and sum(examples[3].labels.values()) == 1
    with session_scope() as s:
        services.decide_proposal(s, people["city_admin"].principal, CITY, "打工人", accept=True)
    with session_scope() as s:
        assert services.proposals(s, people["city_admin"].principal) == []  # decided: not proposed again
        terms = s.scalars(select(ModerationTerm.term).where(ModerationTerm.list == "allow")).all()
    assert "打工人" in terms


def test_an_overdue_step_reminds_then_escalates_once(people, accounts, monkeypatch) -> None:
    from datetime import timedelta

    from core.notify import Notification
    from publisher.services import reviews

    _set_chain(people, PROVINCE, {"steps": [{"name": "初审", "role": "reviewer", "at": "own", "deadline_hours": 2}]})
    post = _post(people["district_editor"], accounts[DISTRICT])
    _to_review(post)
    start = reviews.now()
    assert reviews.remind_overdue_reviews() == {"reminded": 0, "escalated": 0}  # within its deadline
    monkeypatch.setattr(reviews, "now", lambda: start + timedelta(hours=3))
    assert reviews.remind_overdue_reviews() == {"reminded": 1, "escalated": 0}
    assert reviews.remind_overdue_reviews() == {"reminded": 0, "escalated": 0}  # told once
    monkeypatch.setattr(reviews, "now", lambda: start + timedelta(hours=5))
    assert reviews.remind_overdue_reviews() == {"reminded": 0, "escalated": 1}
    with session_scope() as s:
        told = {(n.kind, n.user_id) for n in s.scalars(select(Notification).where(Notification.post_id == post)).all()}
    ids = {name: p.principal.user_id for name, p in people.items()}
    # the reminder: reviewers of the district or above it (the city's, the province's)
    assert {("review_reminded", ids["reviewer"]), ("review_reminded", ids["province_reviewer"])} <= told
    # the escalation: the parent's (the city's) reviewers and admins, and those above
    assert {("review_escalated", ids["city_admin"]), ("review_escalated", ids["admin"])} <= told
    assert ("review_reminded", ids["neighbour_reviewer"]) not in told


def test_audit_rows_name_the_person_and_where_they_acted_from(client: TestClient, people, accounts) -> None:
    from core.audit import events

    client.post(
        "/posts", json={"title": "t", "body": "b", "accounts": [accounts[CITY]]}, headers=people["editor"].headers
    )
    client.post("/auth/tokens", json={"name": "script"}, headers=people["editor"].headers)
    with session_scope() as s:
        rows = {e.action: e for e in events(s, actor="editor", limit=20)}
    editor_id = people["editor"].principal.user_id
    assert rows["post.create"].actor_id == editor_id and rows["post.create"].source.startswith("api ")
    assert rows["token.issue"].actor_id == editor_id


def test_sign_ins_from_one_address_are_rate_limited_across_users(people: dict[str, Person]) -> None:
    from publisher.services.people import SIGN_IN_BURST

    names = list(people)
    for n in range(SIGN_IN_BURST):  # a guesser moving from user to user: no one user's lock-out trips
        with pytest.raises(Unauthenticated, match="wrong user name or password"):
            services.sign_in(names[n % len(names)], "a wrong password", source="api 203.0.113.7")
    with pytest.raises(LockedOut, match=r"too many sign-ins from this address: try again in \d+ s"):
        services.sign_in("editor", password_of("editor"), source="api 203.0.113.7")
    assert services.sign_in("editor", password_of("editor"), source="api 198.51.100.1").name == "editor"


def test_a_bad_review_chain_is_one_line_and_changes_nothing(client: TestClient, people: dict[str, Person]) -> None:
    with session_scope() as s:
        city = s.scalar(select(Organization.id).where(Organization.name == CITY))
    h = people["city_admin"].headers
    cases = [
        ({"steps": [{"role": "boss"}]}, "step 1: unknown role 'boss'"),
        ({"steps": []}, "a review chain needs 1 to 5 steps"),
        ({"applies": "sometimes", "steps": [{"role": "reviewer"}]}, "a chain's 'applies' is 'flagged' or 'always'"),
        ({"steps": [{"role": "reviewer", "at": 2**63}]}, "step 1: 'at' is own, parent, root or an organisation id"),
        ({"steps": [{"role": "reviewer"}], "channels": {"wechat": {"steps": []}}}, "the wechat chain: a review chain"),
    ]
    for chain, reason in cases:
        answer = client.put(f"/organizations/{city}/review-chain", json=chain, headers=h)
        assert answer.status_code == 422 and answer.json()["detail"].startswith(reason), answer.json()
    assert client.get(f"/organizations/{city}/review-chain", headers=h).json()["inherited_from"] is None
    refused = client.put(f"/organizations/{city}/review-chain", json={"steps": [{"role": "reviewer"}]},
                         headers=people["reviewer"].headers)  # fmt: skip
    assert refused.status_code == 403
