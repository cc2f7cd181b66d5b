"""What is live is screened again when the rules change (issue 14, item 8), at the service level on SQLite.

A screening records its engine fingerprint (lexicon, the organisation chain's list versions, model); a live
post whose fingerprint is stale is due, one that is current is not; a re-screen that passes records the new
fingerprint, one that flags opens a live flag for the organisation's reviewers with the new evidence and
retracts nothing; a reviewer retracts it everywhere in one step (the real WordPress sandbox), or keeps it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from channels.sandbox.server import RunningServer
from core.clock import now
from core.db import session_scope
from core.errors import Conflict, Forbidden, InvalidInput
from core.notify import Notification
from publisher import services
from publisher.delivery import retract
from publisher.delivery.deliver import deliver
from publisher.domain.models import AuditEvent, Delivery, LiveFlag, Post, Screening
from publisher.interfaces import cli
from publisher.interfaces.api import app
from publisher.interfaces.live_flags import retract_flagged
from publisher.services import rescreen
from tests.support.people import CITY, DISTRICT, NEIGHBOUR, PROVINCE, SYSTEM, Person, make_user, password_of

pytestmark = pytest.mark.usefixtures("rules_only")

PASSWORD = "abcd efgh ijkl mnop qrst uvwx"
BODY = "本周举行职工技能比武，欢迎报名参加。"
WORD = "技能比武"  # harmless today; an organisation's new deny-list entry makes it "review"


@pytest.fixture()
def people(env: Path) -> dict[str, Person]:
    return {
        "editor": make_user("r-editor", ("editor", PROVINCE)),
        "reviewer": make_user("r-reviewer", ("reviewer", DISTRICT)),
        "outsider": make_user("r-outsider", ("reviewer", NEIGHBOUR)),
        "admin": make_user("r-admin", ("admin", PROVINCE)),
    }


def _manual_account(org: str) -> int:
    with session_scope() as s:
        account = services.add_account(
            s, SYSTEM, kind="manual", name=f"m-{uuid.uuid4().hex[:6]}", credentials={}, organization=org
        )
        s.flush()
        return account.id


def _live_post(editor: Person, org: str = DISTRICT, *, days_ago: float = 0, body: str = BODY) -> int:
    """A post of ``org`` screened (its fingerprint recorded) and published on a manual account ``days_ago``."""
    account = _manual_account(org)
    with session_scope() as s:
        post = services.create_post(s, editor.principal, title="职工技能比武", body=body, accounts=[account],
                                    submit=False)  # fmt: skip
        s.flush()
        services.screen_version(s, post.current_version_id)
        post.state = "published"
        s.add(Delivery(post_id=post.id, version_id=post.current_version_id, account_id=account, state="published",
                       published_at=now() - timedelta(days=days_ago)))  # fmt: skip
        s.flush()
        return post.id


def _due() -> list[int]:
    with session_scope() as s:
        return rescreen.due_posts(s, limit=100)


def _deny(org: str, term: str = WORD, severity: str = "review") -> None:
    with session_scope() as s:
        services.add_moderation_term(
            s, SYSTEM, services.find_organization(s, org).id, term, list_="deny", severity=severity
        )


def _actions(post_id: int) -> list[str]:
    with session_scope() as s:
        return list(
            s.scalars(
                select(AuditEvent.action).where(AuditEvent.object_type == "post", AuditEvent.object_id == post_id)
            )
        )


def test_a_screening_records_its_fingerprint_and_a_current_live_post_is_not_due(people: dict[str, Person]) -> None:
    post_id = _live_post(people["editor"])
    with session_scope() as s:
        fingerprint = s.scalar(
            select(Screening.fingerprint).join(Post, Post.current_version_id == Screening.version_id)
            .where(Post.id == post_id)
        )  # fmt: skip
        org = s.get(Post, post_id).organization_id
        assert fingerprint == rescreen.current_fingerprints(s)[org]
    assert fingerprint.startswith("lexicon=") and ";lists=0;model=none" in fingerprint
    assert _due() == []
    assert rescreen.rescreen_posts([post_id]) == {"passed": 0, "flagged": 0, "skipped": 1}  # nothing changed


def test_a_list_change_makes_the_subtrees_live_posts_due_and_no_other(people: dict[str, Person]) -> None:
    district = _live_post(people["editor"], DISTRICT)
    neighbour = _live_post(people["editor"], NEIGHBOUR)
    old = _live_post(people["editor"], DISTRICT, days_ago=8)  # out of MATRIX_RESCREEN_DAYS (7)
    _deny(CITY, "无关的词")  # the city's lists: the district inherits them, the neighbouring city does not
    assert _due() == [district]
    _deny(PROVINCE, "另一个词")  # the province's lists reach every organisation
    assert sorted(_due()) == sorted([district, neighbour])
    assert old not in _due()
    # a new model (or lexicon) changes every organisation's fingerprint
    with session_scope() as s:
        fingerprints = rescreen.current_fingerprints(s, model_version="model-2")
        assert sorted(rescreen.due_posts(s, limit=100, fingerprints=fingerprints)) == sorted([district, neighbour])


def test_a_rescreen_that_passes_records_the_new_fingerprint(people: dict[str, Person]) -> None:
    post_id = _live_post(people["editor"])
    _deny(DISTRICT, "无关的词")
    assert _due() == [post_id]
    assert rescreen.rescreen_posts([post_id]) == {"passed": 1, "flagged": 0, "skipped": 0}
    assert _due() == []
    assert "post.rescreened.pass" in _actions(post_id)
    with session_scope() as s:
        assert s.scalars(select(LiveFlag)).all() == []
        assert s.get(Post, post_id).state == "published"


def test_a_live_post_flagged_again_goes_to_its_reviewers_and_nothing_is_retracted(people: dict[str, Person]) -> None:
    post_id = _live_post(people["editor"])
    _deny(CITY)
    assert rescreen.rescreen_posts([post_id]) == {"passed": 0, "flagged": 1, "skipped": 0}
    assert rescreen.rescreen_posts([post_id]) == {"passed": 0, "flagged": 0, "skipped": 1}  # done already
    assert _due() == []
    with session_scope() as s:
        post = s.get(Post, post_id)
        assert post.state == "published"  # nothing is retracted without a person
        assert [d.state for d in s.scalars(select(Delivery).where(Delivery.post_id == post_id))] == ["published"]
        (flag,) = s.scalars(select(LiveFlag)).all()
        assert flag.state == "open" and flag.decision == "review"
        told = s.scalars(select(Notification).where(Notification.kind == "live_post_flagged")).all()
        reviewer_id = people["reviewer"].principal.user_id
        assert [n.user_id for n in told] == [reviewer_id]  # the district's reviewer; not the neighbour's
        assert WORD in told[0].message and f"flag {flag.id}" in told[0].message
    assert "post.rescreened.review" in _actions(post_id)
    with session_scope() as s:
        (row,) = rescreen.flag_rows(s, people["reviewer"].principal)
        assert row["post"] == post_id and row["hits"][0]["text"] == WORD
        assert row["hits"][0]["where"]["field"] in ("title", "body")
        assert rescreen.flag_rows(s, people["outsider"].principal) == []  # another tree's reviewer sees none
    with session_scope() as s, pytest.raises(Forbidden):
        rescreen.retraction_for(s, people["outsider"].principal, row["id"])
    # the rules change again and the post is still flagged: the new evidence supersedes the old flag
    _deny(PROVINCE, "欢迎报名", severity="block")
    assert rescreen.rescreen_posts([post_id])["flagged"] == 1
    with session_scope() as s:
        states = {f.decision: f.state for f in s.scalars(select(LiveFlag))}
        assert states == {"review": "superseded", "reject": "open"}


def test_keeping_a_flagged_post_needs_a_reason_and_a_reviewer(people: dict[str, Person]) -> None:
    post_id = _live_post(people["editor"])
    _deny(DISTRICT)
    rescreen.rescreen_posts([post_id])
    with session_scope() as s:
        flag_id = s.scalar(select(LiveFlag.id))
    with session_scope() as s, pytest.raises(InvalidInput, match="needs a reason"):
        rescreen.keep_flag(s, people["reviewer"].principal, flag_id, reason=" ")
    with session_scope() as s, pytest.raises(Forbidden):
        rescreen.keep_flag(s, people["editor"].principal, flag_id, reason="ok")
    with session_scope() as s:
        rescreen.keep_flag(s, people["reviewer"].principal, flag_id, reason="比武是正常活动")
    with session_scope() as s:
        assert s.get(LiveFlag, flag_id).state == "kept" and s.get(Post, post_id).state == "published"
        assert rescreen.flag_rows(s, people["reviewer"].principal) == []
    with pytest.raises(Conflict, match="is kept"):
        retract_flagged(people["reviewer"].principal, flag_id)
    assert "post.live_flag.kept" in _actions(post_id)


def test_only_admins_start_a_rescreen_and_it_marks_every_live_post(people: dict[str, Person]) -> None:
    mine = _live_post(people["editor"], DISTRICT)
    other = _live_post(people["editor"], NEIGHBOUR)
    assert _due() == []
    with session_scope() as s, pytest.raises(Forbidden):
        rescreen.request_rescreen(s, people["reviewer"].principal)
    with session_scope() as s, pytest.raises(InvalidInput, match="--days"):
        rescreen.request_rescreen(s, people["admin"].principal, days=0)
    with session_scope() as s:
        assert rescreen.request_rescreen(s, people["admin"].principal, org=CITY) == 1
    assert _due() == [mine]  # requested, although its fingerprint is current
    assert rescreen.rescreen_posts([mine])["passed"] == 1 and _due() == []
    result = CliRunner().invoke(
        cli.app, ["post", "rescreen", "--days", "3"], env={"MATRIX_TOKEN": people["admin"].token}
    )
    assert result.exit_code == 0, result.output
    assert "2 live posts queued for re-screening" in result.output
    assert sorted(_due()) == sorted([mine, other])


def test_a_reviewer_retracts_a_flagged_post_everywhere_in_one_step(
    people: dict[str, Person], sandbox_server: RunningServer
) -> None:
    site = "rs" + uuid.uuid4().hex[:8]
    login = {"site": site, "username": "editor", "app_password": PASSWORD}
    httpx.post(f"{sandbox_server.url}/wp/_sandbox/accounts", json=login, timeout=10).raise_for_status()
    with session_scope() as s:
        account = services.add_account(s, SYSTEM, kind="website", name=f"site {site}", organization=DISTRICT,
                                       credentials={"username": "editor", "app_password": PASSWORD},
                                       config={"base_url": f"{sandbox_server.url}/wp/{site}"})  # fmt: skip
        s.flush()
        post = services.create_post(s, people["editor"].principal, title="职工技能比武", body=BODY,
                                    accounts=[account.id], submit=False)  # fmt: skip
        s.flush()
        services.screen_version(s, post.current_version_id)
        post.state = "publishing"
        delivery = Delivery(post_id=post.id, version_id=post.current_version_id, account_id=account.id)
        s.add(delivery)
        s.flush()
        post_id, delivery_id = post.id, delivery.id
    assert deliver(delivery_id) == "published"
    assert _state(post_id) == "published"
    _deny(DISTRICT)
    assert rescreen.rescreen_posts(_due())["flagged"] == 1
    with session_scope() as s:
        flag_id = s.scalar(select(LiveFlag.id))
    statuses = lambda: [p["status"] for p in httpx.get(f"{sandbox_server.url}/wp/_sandbox/state", timeout=10)  # noqa: E731
                        .json()["sites"][site]["posts"]]  # fmt: skip
    assert statuses() == ["publish"]
    # a reviewer holds no retraction right of their own, only through the open flag
    with pytest.raises(Forbidden):
        retract.retract_post(people["reviewer"].principal, post_id)
    post_back, lines = retract_flagged(people["reviewer"].principal, flag_id)
    assert post_back == post_id and [line["outcome"] for line in lines] == ["retracted"]
    assert statuses() == ["trash"] and _state(post_id) == "retracted"
    with session_scope() as s:
        flag = s.get(LiveFlag, flag_id)
        assert flag.state == "retracted" and flag.decided_by == people["reviewer"].principal.user_id
        q = select(AuditEvent.action, AuditEvent.actor).where(
            AuditEvent.object_id == post_id, AuditEvent.object_type == "post"
        )
        actors = dict(s.execute(q).all())
    assert actors["post.retract"] == "r-reviewer" and actors["post.live_flag.retracted"] == "r-reviewer"
    with pytest.raises(Conflict):
        retract_flagged(people["reviewer"].principal, flag_id)  # one step, once


def _state(post_id: int) -> str:
    with session_scope() as s:
        return s.get(Post, post_id).state


def test_the_api_and_the_review_page_offer_the_flag_and_its_one_step_retraction(people: dict[str, Person]) -> None:
    post_id = _live_post(people["editor"])
    _deny(DISTRICT)
    with TestClient(app) as client:
        admin, reviewer = people["admin"].headers, people["reviewer"].headers
        assert client.post("/rescreen", json={"days": 0}, headers=admin).status_code == 422
        assert client.post("/rescreen", json={}, headers=reviewer).status_code == 403
        r = client.post("/rescreen", json={"organization": DISTRICT}, headers=admin)
        assert r.status_code == 200 and r.json() == {"queued": 1}
        assert rescreen.rescreen_posts(_due())["flagged"] == 1
        (row,) = client.get("/live-flags", headers=reviewer).json()
        assert row["post"] == post_id and row["hits"][0]["text"] == WORD
        assert client.get("/live-flags", headers=people["outsider"].headers).json() == []
        assert client.post("/live-flags/999999/keep", json={"reason": "x"}, headers=reviewer).status_code == 404
        r = client.post(f"/live-flags/{row['id']}/keep", json={"reason": ""}, headers=reviewer)
        assert r.status_code == 422 and "needs a reason" in r.json()["detail"]
        # the review page lists it first, with its evidence and the retract button
        login = {"name": "r-reviewer", "password": password_of("r-reviewer"), "next": "/ui/review"}
        client.post("/login", data=login, follow_redirects=False)
        page = client.get("/ui/review").text
        assert f'data-testid="flag-{row["id"]}"' in page and f'<mark class="c-{row["hits"][0]["category"]}"' in page
        assert f'data-action="/live-flags/{row["id"]}/retract"' in page
        client.cookies.clear()
        r = client.post(f"/live-flags/{row['id']}/retract", headers=reviewer)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "partially_retracted"  # the manual copy: deleted by hand, then recorded
        assert [d["outcome"] for d in r.json()["deliveries"]] == ["manual"]
        assert client.get("/live-flags", headers=reviewer).json() == []
