"""Retraction is a delivery too, and errors are classified by what happened (issue 12, items 3 and 4).

In-process against the real WordPress sandbox (the session's ``sandbox_server``): a retraction that fails is
retried with backoff until the copy is gone (a second ``retract`` finishing what the first left is a scenario
test, ``tests/scenarios/test_spine.py``), a copy that goes live after its post was
retracted is retracted at once, ``delivery removed`` is for copies without an API, a worker with the wrong
secret key fails the delivery and tells an admin, a token cache or limiter that fails before the request left
is :class:`NotSent` (retried, never a lost answer), and two reconciles never take the same deliveries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from channels.base import AccountInfo, LocalLimiter
from channels.errors import NotSent
from channels.sandbox.server import RunningServer
from channels.tokens import MemoryTokenCache
from channels.website import WebsiteChannel
from core.clock import now
from core.db import session_scope
from core.errors import Conflict
from core.notify import Notification
from core.settings import reset_settings
from publisher import services
from publisher.delivery import assisted, outcomes, reconcile, retract
from publisher.delivery.deliver import deliver
from publisher.domain import lifecycle
from publisher.domain.models import AuditEvent, Delivery, Post
from tests.support.people import PROVINCE, SYSTEM, Person, make_user

PASSWORD = "abcd efgh ijkl mnop qrst uvwx"


@pytest.fixture()
def editor(env: Path) -> Person:
    return make_user("editor", ("editor", PROVINCE))


@pytest.fixture()
def wp(sandbox_server: RunningServer) -> Iterator[Callable[..., None]]:
    """Set a fault on the WordPress sandbox (``wp(path=…, …)``); every fault is cleared after the test."""
    url = f"{sandbox_server.url}/wp/_sandbox/faults"

    def fault(**knob) -> None:
        httpx.post(url, json=knob, timeout=10).raise_for_status()

    yield fault
    httpx.post(url, json={"clear": True}, timeout=10)


def _site(sandbox_server: RunningServer) -> tuple[int, str]:
    """A new site on the WordPress sandbox and our account for it."""
    site = "r" + uuid.uuid4().hex[:8]
    httpx.post(
        f"{sandbox_server.url}/wp/_sandbox/accounts",
        json={"site": site, "username": "editor", "app_password": PASSWORD},
        timeout=10,
    ).raise_for_status()
    with session_scope() as s:
        account = services.add_account(
            s,
            SYSTEM,
            kind="website",
            name=f"site {site}",
            credentials={"username": "editor", "app_password": PASSWORD},
            config={"base_url": f"{sandbox_server.url}/wp/{site}"},
            organization=PROVINCE,
        )
        s.flush()
        return account.id, site


def _wp_statuses(sandbox_server: RunningServer, site: str) -> list[str]:
    state = httpx.get(f"{sandbox_server.url}/wp/_sandbox/state", timeout=10).json()
    return [p["status"] for p in state["sites"][site]["posts"]]


def _published_post(editor: Person, accounts: list[int]) -> tuple[int, list[int]]:
    """A post sent to ``accounts`` by this process (``deliver``, as a worker does); its id and deliveries'."""
    with session_scope() as s:
        post = services.create_post(
            s, editor.principal, title="职工运动会", body="欢迎报名。", accounts=accounts, submit=False
        )
        post.state = "publishing"
        s.flush()
        made = [Delivery(post_id=post.id, version_id=post.current_version_id, account_id=a) for a in accounts]
        s.add_all(made)
        s.flush()
        post_id, ids = post.id, [d.id for d in made]
    for delivery_id in ids:
        assert deliver(delivery_id) == "published"
    return post_id, ids


def _state(model: type, obj_id: int) -> str:
    with session_scope() as s:
        return s.get(model, obj_id).state


def _due_now(delivery_id: int) -> None:
    """Time passes: the delivery's next attempt is due (instead of sleeping through the backoff)."""
    with session_scope() as s:
        s.get(Delivery, delivery_id).next_attempt_at = now()


def _actions(delivery_id: int) -> list[str]:
    with session_scope() as s:
        return list(
            s.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.object_type == "delivery", AuditEvent.object_id == delivery_id)
                .order_by(AuditEvent.id)
            )
        )


def _told(kind: str) -> list[Notification]:
    with session_scope() as s:
        return list(s.scalars(select(Notification).where(Notification.kind == kind)).all())


# ------------------------------------------------------------------------------------------ lifecycle


def test_a_post_is_partially_retracted_while_any_copy_may_be_live() -> None:
    assert lifecycle.retraction_state(["retracted", "cancelled"]) == "retracted"
    for live in ("published", "retracting", "retract_failed", "awaiting_confirmation", "sending", "unconfirmed"):
        assert lifecycle.retraction_state(["retracted", live]) == "partially_retracted", live
    assert not lifecycle.can("post", "partially_retracted", "publishing")  # nothing of it goes out again
    assert lifecycle.can("delivery", "retract_failed", "retracting")  # a second `retract` tries again


# ------------------------------------------------------------------------------------------ retraction


def test_a_failing_retraction_is_retried_with_backoff_until_the_copy_is_gone(
    editor: Person, sandbox_server: RunningServer, wp: Callable[..., None]
) -> None:
    account, site = _site(sandbox_server)
    post_id, (delivery_id,) = _published_post(editor, [account])
    wp(path=f"{site}/wp-json/wp/v2/posts/", method="DELETE", status=503, times=2)

    (line,) = retract.retract_post(editor.principal, post_id)
    assert line["outcome"] == "retracting" and "503" in line["detail"]
    assert _state(Post, post_id) == "partially_retracted" and _wp_statuses(sandbox_server, site) == ["publish"]
    # not due yet: the backoff holds (a wake-up with that countdown went to the broker)
    assert retract.retract_delivery(delivery_id)["detail"].startswith("next attempt")
    _due_now(delivery_id)
    assert retract.retract_delivery(delivery_id)["outcome"] == "retracting"  # the second 503
    _due_now(delivery_id)
    assert retract.retract_delivery(delivery_id)["outcome"] == "retracted"
    assert _state(Delivery, delivery_id) == "retracted" and _state(Post, post_id) == "retracted"
    assert _wp_statuses(sandbox_server, site) == ["trash"]
    assert _actions(delivery_id).count("delivery.retract_error") == 2
    with pytest.raises(Conflict, match="no copy of it is left"):
        retract.retract_post(editor.principal, post_id)


def test_a_copy_that_goes_live_after_its_post_was_retracted_is_retracted_at_once(
    editor: Person, sandbox_server: RunningServer
) -> None:
    account, _site_name = _site(sandbox_server)
    post_id, (delivery_id,) = _published_post(editor, [account])
    with session_scope() as s:  # as if it were still settling (an asynchronous platform) when the post was retracted
        s.get(Delivery, delivery_id).state = "awaiting_confirmation"
        s.get(Post, post_id).state = "partially_retracted"
    with session_scope() as s:  # reconcile's status poll finds it published
        post, d = outcomes.lock_post_and_delivery(s, delivery_id)
        outcomes.mark_published(s, d, post, "https://example.org/p/1", actor="reconcile")
        assert d.state == "retracting" and d.claimed_by == "queued"  # and its retraction queued
    assert retract.retract_delivery(delivery_id)["outcome"] == "retracted"
    assert _state(Post, post_id) == "retracted"


def test_removed_by_hand_is_only_for_copies_without_an_api_and_checks_the_url(
    editor: Person, sandbox_server: RunningServer, wp: Callable[..., None]
) -> None:
    account, site = _site(sandbox_server)
    post_id, (api_delivery,) = _published_post(editor, [account])
    with session_scope() as s:
        manual = services.add_account(s, SYSTEM, kind="manual", name="视频号", credentials={}, organization=PROVINCE)
        s.flush()
        live_url = f"{sandbox_server.url}/wp/{site}/?p=1"  # a page that answers 200
        d = Delivery(
            post_id=post_id,
            version_id=s.get(Post, post_id).current_version_id,
            account_id=manual.id,
            state="published",
            remote_url=live_url,
        )
        s.add(d)
        s.flush()
        by_hand = d.id
    wp(path=f"{site}/wp-json/wp/v2/posts/", method="DELETE", status=503, times=-1)
    lines = {line["delivery"]: line for line in retract.retract_post(editor.principal, post_id)}
    assert lines[by_hand]["outcome"] == "manual" and lines[api_delivery]["outcome"] == "retracting"
    with pytest.raises(Conflict, match="retracted through the platform's API"):
        assisted.confirm_removed(editor.principal, api_delivery)  # a person's word does not replace the API
    page = httpx.get(live_url, timeout=10)
    assert page.status_code == 200
    with pytest.raises(Conflict, match="still answers HTTP 200"):
        assisted.confirm_removed(editor.principal, by_hand)
    removed, checked = assisted.confirm_removed(editor.principal, by_hand, force=True)
    assert removed.state == "retracted" and "--force" in checked
    assert _state(Post, post_id) == "partially_retracted"  # the website copy is still up


# ------------------------------------------------------------------------------------- classified errors


def test_a_worker_with_the_wrong_secret_key_fails_the_delivery_and_tells_an_admin(
    editor: Person, sandbox_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = make_user("admin", ("admin", PROVINCE))
    account, site = _site(sandbox_server)
    with session_scope() as s:
        post = services.create_post(s, editor.principal, title="t", body="b", accounts=[account], submit=False)
        post.state = "publishing"
        s.flush()
        d = Delivery(post_id=post.id, version_id=post.current_version_id, account_id=account)
        s.add(d)
        s.flush()
        post_id, delivery_id = post.id, d.id
    monkeypatch.setenv("MATRIX_SECRET_KEY", "another-key-that-decrypts-nothing-here")
    reset_settings()
    assert deliver(delivery_id) == "skipped"  # never claimed, never sent
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        assert d.state == "failed" and "cannot be decrypted" in d.last_error and "MATRIX_SECRET_KEY" in d.last_error
        assert s.get(Post, post_id).state == "failed"
    assert _wp_statuses(sandbox_server, site) == []
    (told,) = _told("secret_key")
    assert told.user_id == admin.principal.user_id and f"site {site}" in told.message


def test_a_token_cache_that_fails_before_the_request_left_is_not_sent() -> None:
    class Down(MemoryTokenCache):
        def _read(self, key: str):
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with pytest.raises(NotSent, match="token cache failed") as exc:
        Down().get("wechat:wx1", lambda force: ("token", 7200))
    assert "6379" not in str(exc.value)  # the class of the error, not its text (no addresses, no secrets)


def test_a_limiter_that_fails_before_the_request_left_is_not_sent() -> None:
    class Down(LocalLimiter):
        def acquire(self, key: str, per_second: float, burst: int = 1) -> None:
            raise sa.exc.OperationalError("UPDATE rate_limits", {}, Exception("database is locked"))

    sent: list[httpx.Request] = []
    client = httpx.Client(transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200)))
    account = AccountInfo(id=1, kind="website", name="w", credentials={"username": "u", "app_password": "p"})
    channel = WebsiteChannel(account, client, limiter=Down())
    with pytest.raises(NotSent, match="rate limiter"):
        channel.request("POST", "https://example.org/wp-json/wp/v2/posts")
    assert sent == []


def test_a_failed_lookup_is_no_answer_so_the_next_attempt_looks_again(
    editor: Person, sandbox_server: RunningServer, wp: Callable[..., None]
) -> None:
    account, site = _site(sandbox_server)
    with session_scope() as s:
        post = services.create_post(s, editor.principal, title="t", body="b", accounts=[account], submit=False)
        post.state = "publishing"
        s.flush()
        # an earlier attempt's answer was lost: whether it posted is unknown
        d = Delivery(post_id=post.id, version_id=post.current_version_id, account_id=account, outcome_unknown=True)
        s.add(d)
        s.flush()
        delivery_id = d.id
    wp(path=f"{site}/wp-json/wp/v2/posts", method="GET", status=503, times=1)  # the lookup fails
    assert deliver(delivery_id) == "retry_wait"
    with session_scope() as s:
        assert s.get(Delivery, delivery_id).outcome_unknown is True  # still unknown: look before posting
    _due_now(delivery_id)
    assert deliver(delivery_id) == "published"
    assert _wp_statuses(sandbox_server, site) == ["publish"]


# ------------------------------------------------------------------------------------------ reconcile


def test_two_reconciles_never_take_the_same_deliveries(backend: str) -> None:
    with session_scope() as s:
        account = services.add_account(s, SYSTEM, kind="manual", name="m", credentials={}, organization=PROVINCE)
        post = services.create_post(s, SYSTEM, title="t", body="b", accounts=[account.id], submit=False)
        post.state = "publishing"
        s.flush()
        s.add_all(
            Delivery(post_id=post.id, version_id=post.current_version_id, account_id=account.id, state="unconfirmed")
            for _ in range(4)
        )
    if backend == "postgresql":
        # one reconcile in the middle of its scan (its transaction open, two rows locked): the other skips them
        with session_scope() as first:
            held = first.scalars(
                select(Delivery.id)
                .where(Delivery.state == "unconfirmed")
                .order_by(Delivery.id)
                .limit(2)
                .with_for_update()
            ).all()
            taken = reconcile._take("unconfirmed", 100)
            assert len(taken) == 2 and not set(taken) & set(held)
    else:
        taken = reconcile._take("unconfirmed", 100)
        assert len(taken) == 4
    # and once a scan has committed, what it took is marked (next look one interval on) for the next one
    assert not set(reconcile._take("unconfirmed", 100)) & set(taken)
    with session_scope() as s:
        later = now() + timedelta(seconds=0.5)
        assert all(d.next_attempt_at > later for d in s.scalars(select(Delivery).where(Delivery.id.in_(taken))))
