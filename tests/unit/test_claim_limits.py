"""The claim step holds back what the platform would refuse: Weibo's 30 posts/hour per account, paused accounts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.clock import now
from core.db import session_scope
from publisher import services
from publisher.delivery import assisted, deliver, outcomes, retract
from publisher.domain.models import Account, Delivery, Post
from tests.support.people import PROVINCE, SYSTEM, make_user


def _weibo_account(s) -> Account:
    """A Weibo account whose platform is never reached (the claim step decides before any call)."""
    return services.add_account(
        s,
        SYSTEM,
        kind="weibo",
        name="微博",
        credentials={"access_token": "t", "uid": "1"},
        config={"base_url": "http://127.0.0.1:9/weibo", "safe_domain": "127.0.0.1", "rip": "127.0.0.1"},
        organization=PROVINCE,
    )


def _weibo_with_history(sent_in_last_hour: int) -> tuple[int, int]:
    """A Weibo account with that many posts claimed in the last hour, and one more delivery pending."""
    with session_scope() as s:
        account = _weibo_account(s)
        post = services.create_post(s, SYSTEM, title="t", body="b", accounts=[account.id], submit=False)
        post.state = "publishing"
        s.flush()
        t = now()
        for i in range(sent_in_last_hour):
            s.add(
                Delivery(
                    post_id=post.id,
                    version_id=post.current_version_id,
                    account_id=account.id,
                    state="published",
                    claimed_at=t - timedelta(minutes=50 - i),
                )
            )
        pending = Delivery(
            post_id=post.id,
            version_id=post.current_version_id,
            account_id=account.id,
            state="pending",
            next_attempt_at=t,
        )
        s.add(pending)
        s.flush()
        return account.id, pending.id


def test_the_31st_weibo_post_in_an_hour_waits_instead_of_being_sent(env) -> None:
    _account, delivery_id = _weibo_with_history(30)
    assert deliver._claim(delivery_id) is None  # not sent: no platform call is made
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        assert d.state == "retry_wait" and "30 posts/hour" in d.last_error
        # it waits until the oldest of the 30 is an hour old (claimed 50 minutes ago)
        assert timedelta(minutes=9) < d.next_attempt_at - now() < timedelta(minutes=11)


def test_under_the_limit_the_delivery_is_claimed(env) -> None:
    _account, delivery_id = _weibo_with_history(29)
    claim = deliver._claim(delivery_id)
    assert claim is not None
    with session_scope() as s:
        assert s.get(Delivery, delivery_id).state == "sending"


def test_a_paused_account_holds_its_deliveries_until_the_pause_ends(env) -> None:
    account_id, delivery_id = _weibo_with_history(0)
    until = now() + timedelta(hours=3)
    with session_scope() as s:
        account = s.get(Account, account_id)
        account.status, account.paused_until = "paused", until
    assert deliver._claim(delivery_id) is None
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        assert d.state == "retry_wait" and d.next_attempt_at == until and d.attempts == 0
        assert s.get(Post, d.post_id).state == "publishing"  # waiting is not failing


def test_reauthorising_an_account_reopens_the_post_its_deliveries_waited_for(env) -> None:
    """needs_reauth settles the post as failed; once the account is re-authorised, the post is publishing
    again, and when the released delivery is published the post becomes published (not stuck in failed)."""
    account_id, delivery_id = _weibo_with_history(0)
    with session_scope() as s:
        s.get(Account, account_id).status = "needs_reauth"
    assert deliver._claim(delivery_id) is None
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        assert d.state == "needs_reauth" and s.get(Post, d.post_id).state == "failed"
        post_id = d.post_id
    admin = make_user("admin", ("admin", PROVINCE)).principal
    with session_scope() as s:
        services.reauthorize_account(s, admin, account_id, {"access_token": "new", "uid": "1"})
    with session_scope() as s:
        assert s.get(Delivery, delivery_id).state == "pending"
        assert s.get(Post, post_id).state == "publishing"
    assert deliver._claim(delivery_id) is not None
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        d.state, d.remote_id = "published", "4900000000000001"
        outcomes.settle_post(s, s.get(Post, post_id))
    with session_scope() as s:
        assert s.get(Post, post_id).state == "published"


def _weibo_waiting_for_website(website_state: str) -> tuple[int, int]:
    """A post with a website delivery in ``website_state`` and a Weibo delivery that links to its copy."""
    with session_scope() as s:
        site = services.add_account(
            s,
            SYSTEM,
            kind="website",
            name="官网",
            credentials={"username": "u", "app_password": "p"},
            config={"base_url": "http://127.0.0.1:9/wp/a"},
            organization=PROVINCE,
        )
        weibo = _weibo_account(s)
        post = services.create_post(s, SYSTEM, title="t", body="b", accounts=[site.id], submit=False)
        post.state = "publishing"
        s.flush()
        common = {"post_id": post.id, "version_id": post.current_version_id}
        website = Delivery(account_id=site.id, state=website_state, **common)
        s.add(website)
        s.flush()
        linked = Delivery(
            account_id=weibo.id, state="pending", next_attempt_at=now(), depends_on_id=website.id, **common
        )
        s.add(linked)
        s.flush()
        return post.id, linked.id


def test_a_weibo_delivery_waits_while_its_website_copy_needs_reauthorisation(env) -> None:
    post_id, delivery_id = _weibo_waiting_for_website("needs_reauth")
    assert deliver._claim(delivery_id) is None  # no platform call
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        assert d.state == "pending" and "re-authorisation" in d.last_error and d.next_attempt_at > now()
        assert s.get(Post, post_id).state == "publishing"  # recoverable: nothing failed yet


def test_a_weibo_delivery_fails_when_its_website_copy_failed(env) -> None:
    _post_id, delivery_id = _weibo_waiting_for_website("failed")
    assert deliver._claim(delivery_id) is None
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        assert d.state == "failed" and "website copy" in d.last_error


def test_an_assisted_delivery_deleted_by_hand_is_recorded_as_retracted(env) -> None:
    """Retraction cannot reach a platform without an API: it asks for deletion by hand, then records it."""
    from core.errors import Conflict

    editor = make_user("editor", ("editor", PROVINCE)).principal  # retracts, and records the deletion by hand
    with session_scope() as s:
        account = services.add_account(s, SYSTEM, kind="manual", name="视频号", credentials={}, organization=PROVINCE)
        post = services.create_post(s, editor, title="t", body="b", accounts=[account.id], submit=False)
        post.state = "published"
        s.flush()
        d = Delivery(
            post_id=post.id, version_id=post.current_version_id, account_id=account.id, state="published",
            remote_id="mm-1", remote_url="https://channels.example/p/1",
        )  # fmt: skip
        s.add(d)
        s.flush()
        post_id, delivery_id = post.id, d.id
    with pytest.raises(Conflict, match="retract the post first"):
        assisted.confirm_removed(editor, delivery_id)
    (line,) = retract.retract_post(editor, post_id)
    assert line["outcome"] == "manual" and f"matrix delivery removed {delivery_id}" in line["detail"]
    removed, checked = assisted.confirm_removed(editor, delivery_id)
    assert removed.state == "retracted" and checked.startswith("not checked")  # no such host: said so
    with pytest.raises(Conflict, match="only a published delivery"):
        assisted.confirm_removed(editor, delivery_id)  # recorded once


def test_a_post_settles_once_its_last_delivery_settles_and_a_failed_settle_is_logged(env, monkeypatch, caplog) -> None:
    """Outcomes are committed before the post is settled (outcomes.settle_after_outcome): while a delivery is
    still in flight nothing changes; once none is, the post settles; a failure of that step loses no outcome."""
    _account, pending_id = _weibo_with_history(1)  # one published delivery, one still pending
    with session_scope() as s:
        post_id = s.get(Delivery, pending_id).post_id
    outcomes.settle_after_outcome(post_id)
    with session_scope() as s:
        assert s.get(Post, post_id).state == "publishing"  # a delivery is still in flight
        s.get(Delivery, pending_id).state = "failed"

    def broken(*_args, **_kwargs):
        raise RuntimeError("database went away")

    with monkeypatch.context() as m:
        m.setattr(outcomes, "settle_post", broken)
        outcomes.settle_after_outcome(post_id)  # logged, not raised: the outcome before it stays committed
    assert f"post {post_id}: not settled now; reconcile settles it" in caplog.text
    with session_scope() as s:
        assert s.get(Delivery, pending_id).state == "failed"
    outcomes.settle_after_outcome(post_id)
    with session_scope() as s:
        assert s.get(Post, post_id).state == "partially_published"


def test_an_attempt_is_audited_with_its_outcome_at_the_time_it_was_claimed(env) -> None:
    from sqlalchemy import select

    from channels.errors import NotSent
    from core.audit import appended_at_commit
    from publisher.domain.models import AuditEvent

    def rows(delivery_id: int) -> list[tuple[str, object]]:
        with session_scope() as s:
            q = select(AuditEvent).where(AuditEvent.object_type == "delivery", AuditEvent.object_id == delivery_id)
            return [(e.action, e) for e in s.scalars(q.order_by(AuditEvent.id))]

    _account, delivery_id = _weibo_with_history(0)
    with appended_at_commit():
        claim = deliver._claim(delivery_id)
        assert claim is not None and claim.attempt == 1
        # the claim's transaction takes no turn at the audit chain's lock: nothing is written yet
        assert rows(delivery_id) == []
        deliver._record(claim, error=NotSent("refused before the request left"))
    written = rows(delivery_id)
    assert [action for action, _ in written] == ["delivery.attempt", "delivery.error"]
    attempt = written[0][1]
    assert attempt.detail == {"attempt": 1} and attempt.actor == deliver.WORKER_ID
    assert abs((attempt.at - claim.attempt_at).total_seconds()) < 1e-3  # when it was claimed, not recorded
    with session_scope() as s:
        from core.audit import verify

        assert verify(s).ok
