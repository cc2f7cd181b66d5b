"""The spine, end to end with a real Celery worker and beat, on the embedded default and on PostgreSQL + Redis.

Every scenario uses its own WordPress sandbox site, so faults aimed at one site's path touch no other test.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from sqlalchemy import select

from tests.support.stack import Stack

# The `stack` fixture (tests/scenarios/conftest.py), once per backend for the whole module.
pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.parametrize("stack", ["embedded", "services"], indirect=True, scope="module"),
]


def _deliveries(stack: Stack, post_id: int) -> list[dict]:
    return stack.post(post_id)["deliveries"]


def _settled(stack: Stack, post_id: int, state: str = "published"):
    def check():
        info = stack.post(post_id)
        return info if info["state"] == state else None

    return check


def _attempt_times(delivery_id: int) -> list[datetime]:
    from core.db import session_scope
    from publisher.domain.models import AuditEvent

    with session_scope() as s:
        return list(
            s.scalars(
                select(AuditEvent.at)
                .where(AuditEvent.action == "delivery.attempt", AuditEvent.object_id == delivery_id)
                .order_by(AuditEvent.id)
            ).all()
        )


def test_schedule_publishes_on_every_account(stack: Stack) -> None:
    sites = [f"all{i}" for i in range(3)]
    accounts = [stack.website_account(site) for site in sites]
    post_id = stack.publish(accounts)
    info = stack.wait_for(_settled(stack, post_id), what="post published")
    assert {d["state"] for d in info["deliveries"]} == {"published"}
    for site in sites:
        posts = stack.wp_posts(site)
        assert len(posts) == 1 and posts[0]["status"] == "publish"
    # each delivery's URL serves the post as an HTML page
    import httpx

    page = httpx.get(info["deliveries"][0]["remote_url"], timeout=10)
    assert page.status_code == 200 and "职工技能大赛开幕" in page.text


def test_503_twice_then_success_posts_once_with_three_attempts(stack: Stack) -> None:
    account = stack.website_account("t503")
    stack.sandbox_call(
        "POST",
        "/wp/_sandbox/faults",
        json={"path": "t503/wp-json/wp/v2/posts", "method": "POST", "status": 503, "times": 2},
    )
    post_id = stack.publish([account])
    info = stack.wait_for(_settled(stack, post_id), what="published after two 503s")
    assert info["deliveries"][0]["attempts"] == 3
    assert len(stack.wp_posts("t503")) == 1


def test_401_needs_reauth_without_retry(stack: Stack) -> None:
    account = stack.website_account("t401")
    stack.sandbox_call(
        "POST", "/wp/_sandbox/faults", json={"path": "t401/wp-json/wp/v2/posts", "status": 401, "times": -1}
    )
    try:
        post_id = stack.publish([account])
        info = stack.wait_for(_settled(stack, post_id, "failed"), what="needs_reauth")
        delivery = info["deliveries"][0]
        assert delivery["state"] == "needs_reauth" and delivery["attempts"] == 1
        time.sleep(3)  # several beat ticks: still no second attempt
        assert _deliveries(stack, post_id)[0]["attempts"] == 1
        from core.db import session_scope
        from core.notify import Notification
        from publisher.domain.models import Account

        editor_id = stack.editor.principal.user_id
        with session_scope() as s:
            assert s.get(Account, account).status == "needs_reauth"
            told = s.scalars(
                select(Notification).where(Notification.user_id == editor_id, Notification.post_id == post_id)
            ).all()
            assert [n.kind for n in told] == ["needs_reauth"]  # the post's owner is told
    finally:
        stack.sandbox_call("POST", "/wp/_sandbox/faults", json={"clear": True})
    assert stack.wp_posts("t401") == []


def test_429_retry_after_is_honoured(stack: Stack) -> None:
    account = stack.website_account("t429")
    stack.sandbox_call(
        "POST",
        "/wp/_sandbox/faults",
        json={"path": "t429/wp-json/wp/v2/posts", "method": "POST", "status": 429, "retry_after": 3, "times": 1},
    )
    post_id = stack.publish([account])
    info = stack.wait_for(_settled(stack, post_id), what="published after 429")
    delivery = info["deliveries"][0]
    times = _attempt_times(delivery["id"])
    assert len(times) == 2
    assert (times[1] - times[0]).total_seconds() >= 3.0
    assert len(stack.wp_posts("t429")) == 1


def test_answer_lost_after_commit_is_reconciled_to_one_post(stack: Stack) -> None:
    account = stack.website_account("tdrop")
    stack.sandbox_call(
        "POST",
        "/wp/_sandbox/faults",
        json={"path": "tdrop/wp-json/wp/v2/posts", "method": "POST", "drop_after_commit": True, "times": 1},
    )
    post_id = stack.publish([account])
    info = stack.wait_for(_settled(stack, post_id), what="reconciled to published")
    assert len(stack.wp_posts("tdrop")) == 1
    from core.db import session_scope
    from publisher.domain.models import AuditEvent

    with session_scope() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.object_id == info["deliveries"][0]["id"])).all()
    assert "delivery.error" in actions  # the lost answer was seen (OutcomeUnknown -> unconfirmed) …
    assert "delivery.reconciled" in actions  # … and resolved by looking on the platform


def test_worker_killed_mid_delivery_publishes_each_exactly_once(stack: Stack) -> None:
    sites = [f"kill{i}" for i in range(4)]
    accounts = [stack.website_account(site) for site in sites]
    stack.sandbox_call(
        "POST", "/wp/_sandbox/faults", json={"path": "/kill", "method": "POST", "latency_ms": 2500, "times": -1}
    )
    try:
        post_id = stack.publish(accounts)
        stack.wait_for(
            lambda: any(d["state"] == "sending" for d in _deliveries(stack, post_id)), what="a delivery in flight"
        )
        stack.kill_worker()
        stack.start_worker()
        stack.wait_for(_settled(stack, post_id), timeout=120, what="all published after the crash")
    finally:
        stack.sandbox_call("POST", "/wp/_sandbox/faults", json={"clear": True})
    for site in sites:
        assert len(stack.wp_posts(site)) == 1, site


def test_editing_an_approved_post_forces_new_screening(stack: Stack) -> None:
    from core.db import session_scope
    from publisher import services

    account = stack.website_account("tedit")
    editor = stack.editor.principal
    with session_scope() as s:
        post = services.create_post(s, editor, title="工会新闻", body="第一版内容。", accounts=[account])
        s.flush()
        post_id = post.id
    first = stack.wait_for(_settled(stack, post_id, "approved"), what="first approval")
    with session_scope() as s:
        post = services.edit_post(s, editor, post_id, body="第二版内容，增加了活动时间。")
        assert post.state == "screening"
    second = stack.wait_for(_settled(stack, post_id, "approved"), what="second screening")
    assert second["version"] == first["version"] + 1
    assert second["content_hash"] != first["content_hash"]
    assert second["screening"] is not None


def test_a_failed_post_edited_with_an_uploaded_cover_is_retried_with_the_new_version(stack: Stack) -> None:
    """Issue 9's dead end: a post that failed is corrected (a new version with a cover uploaded as a file),
    screened again by the worker, retried, and published once, with the new title and the uploaded bytes."""
    from core.db import session_scope
    from publisher import services
    from tests.unit.test_editor_dead_ends import png

    account = stack.website_account("tfix")
    stack.sandbox_call(
        "POST",
        "/wp/_sandbox/faults",
        json={"path": "tfix/wp-json/wp/v2/posts", "method": "POST", "status": 400, "times": 1},
    )
    post_id = stack.publish([account], title="职工书屋开放")
    info = stack.wait_for(_settled(stack, post_id, "failed"), what="failed for good (400)")
    assert info["deliveries"][0]["state"] == "failed" and stack.wp_posts("tfix") == []

    editor = stack.editor.principal
    image = png(6, 4)
    with session_scope() as s:
        media = services.upload_image(s, editor, None, image, "cover.png")
        services.edit_post(s, editor, post_id, title="职工书屋开放（更正）", cover_url=services.media_ref(media))
    stack.wait_for(_settled(stack, post_id, "approved"), what="the new version screened and approved")
    with session_scope() as s:
        services.retry_post(s, editor, post_id)
    stack.wait_for(_settled(stack, post_id), what="published after the retry")
    site = stack.sandbox_call("GET", "/wp/_sandbox/state")["sites"]["tfix"]
    assert [p["title"] for p in site["posts"]] == ["职工书屋开放（更正）"]
    assert [m["bytes"] for m in site["media"]] == [len(image)]
    assert site["posts"][0]["featured_media"] == site["media"][0]["id"]


# ------------------------------------------------------------------ retraction is a delivery too (issue 12)


def _retract(stack: Stack, post_id: int) -> dict[int, dict]:
    """``matrix post retract`` as the editor (the API and the CLI call this), one line per delivery by id."""
    from publisher.delivery import retract

    return {line["delivery"]: line for line in retract.retract_post(stack.editor.principal, post_id)}


def _audit_actions(delivery_id: int) -> list[str]:
    from core.db import session_scope
    from publisher.domain.models import AuditEvent

    with session_scope() as s:
        return list(
            s.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.object_type == "delivery", AuditEvent.object_id == delivery_id)
                .order_by(AuditEvent.id)
            ).all()
        )


def test_a_failing_retraction_is_retried_until_the_copy_is_gone(stack: Stack) -> None:
    account = stack.website_account("rt503")
    post_id = stack.publish([account])
    (delivery,) = stack.wait_for(_settled(stack, post_id), what="published")["deliveries"]
    stack.sandbox_call(
        "POST",
        "/wp/_sandbox/faults",
        json={"path": "rt503/wp-json/wp/v2/posts/", "method": "DELETE", "status": 503, "times": 2},
    )
    line = _retract(stack, post_id)[delivery["id"]]
    assert line["outcome"] == "retracting" and "503" in line["detail"]
    assert stack.post(post_id)["state"] == "partially_retracted"
    # the worker retries it (the wake-ups carry the backoff) until the DELETE goes through
    stack.wait_for(_settled(stack, post_id, "retracted"), what="retracted after two 503s")
    assert [p["status"] for p in stack.wp_posts("rt503")] == ["trash"]
    assert _audit_actions(delivery["id"]).count("delivery.retract_error") == 2


def test_a_second_retract_finishes_what_the_first_left(stack: Stack) -> None:
    from core.db import session_scope
    from core.notify import Notification

    first, second = stack.website_account("rtkeep"), stack.website_account("rtgone")
    post_id = stack.publish([first, second])
    info = stack.wait_for(_settled(stack, post_id), what="published on both")
    ids = {d["account"]: d["id"] for d in info["deliveries"]}
    stack.sandbox_call(
        "POST",
        "/wp/_sandbox/faults",
        json={"path": "rtkeep/wp-json/wp/v2/posts/", "method": "DELETE", "status": 400, "code": "rest_invalid_param"},
    )
    lines = _retract(stack, post_id)
    assert lines[ids["site rtkeep"]]["outcome"] == "retract_failed"
    assert lines[ids["site rtgone"]]["outcome"] == "retracted"
    assert stack.post(post_id)["state"] == "partially_retracted"
    assert [p["status"] for p in stack.wp_posts("rtkeep")] == ["publish"]  # still up, and the owner knows it
    with session_scope() as s:
        (told,) = s.scalars(
            select(Notification).where(Notification.post_id == post_id, Notification.kind == "retraction_incomplete")
        ).all()
    assert told.user_id == stack.editor.principal.user_id and "site rtkeep" in told.message

    lines = _retract(stack, post_id)  # again: only what is left
    assert lines[ids["site rtkeep"]]["outcome"] == "retracted" and lines[ids["site rtgone"]]["outcome"] == "already"
    assert stack.post(post_id)["state"] == "retracted"
    assert [p["status"] for p in stack.wp_posts("rtkeep")] == ["trash"]


def test_a_worker_with_the_wrong_secret_key_fails_the_delivery_and_tells_an_admin(stack: Stack) -> None:
    """The account's credentials were encrypted with another key than the worker's (a key changed on one machine):
    the same as a worker started with the wrong key, without restarting the processes."""
    import json

    from cryptography.fernet import Fernet

    from core.crypto import derive_key
    from core.db import session_scope
    from core.notify import Notification
    from publisher.domain.models import Account

    account = stack.website_account("rtkey")
    other = Fernet(derive_key("another-secret-key-of-another-installation"))
    credentials = {"username": "editor", "app_password": "abcd efgh ijkl mnop qrst uvwx"}
    with session_scope() as s:
        s.get(Account, account).credentials_enc = other.encrypt(json.dumps(credentials).encode())
    post_id = stack.publish([account])
    info = stack.wait_for(_settled(stack, post_id, "failed"), what="failed: credentials unreadable")
    (delivery,) = info["deliveries"]
    assert "cannot be decrypted" in delivery["last_error"] and delivery["attempts"] == 0  # never sent
    assert stack.wp_posts("rtkey") == []
    with session_scope() as s:
        told = s.scalars(select(Notification).where(Notification.kind == "secret_key")).all()
    # no admin in this organisation: whoever administers the installation is told, naming the account
    assert [n.user_id for n in told] == [None] and "site rtkey" in told[0].message
