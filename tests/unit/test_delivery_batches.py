"""A fan-out's deliveries are claimed, sent and recorded in batches, and their status checks too (issue 12);
an attempt whose claim was taken over stops before it posts; a platform's "slow down" does not fail a delivery
after the attempts of an error.

In-process against the real sandboxes (the session's ``sandbox_server``: WordPress and WeChat), on both
databases: a batch claims what is ready and skips the rest, every copy is posted once, the whole batch costs
two transactions besides the adapters' own progress saves, one outcome whose batch cannot be recorded together
is recorded alone, a batch's settling copies are looked at by one task, and the copies that link to the website
copy are woken in batches.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from channels.errors import RateLimited, Unavailable
from channels.sandbox.server import RunningServer
from core.broker import Task
from core.clock import now
from core.db import session_scope
from publisher import services
from publisher.delivery import deliver, outcomes, reconcile
from publisher.delivery.context import ClaimLost
from publisher.domain.models import Account, AuditEvent, Delivery, Post
from publisher.services.channels import account_info
from tests.support.people import PROVINCE, SYSTEM

PASSWORD = "abcd efgh ijkl mnop qrst uvwx"


def _website(server: RunningServer) -> tuple[int, str]:
    site = "b" + uuid.uuid4().hex[:8]
    login = {"site": site, "username": "editor", "app_password": PASSWORD}
    httpx.post(f"{server.url}/wp/_sandbox/accounts", json=login, timeout=10).raise_for_status()
    with session_scope() as s:
        account = services.add_account(
            s, SYSTEM, kind="website", name=f"site {site}", organization=PROVINCE,
            credentials={"username": "editor", "app_password": PASSWORD},
            config={"base_url": f"{server.url}/wp/{site}"},
        )  # fmt: skip
        s.flush()
        return account.id, site


def _wechat(server: RunningServer) -> int:
    appid = "wxt" + uuid.uuid4().hex[:13]
    app = {"appid": appid, "secret": "s", "settle_s": 0}
    httpx.post(f"{server.url}/wechat/_sandbox/accounts", json=app, timeout=10).raise_for_status()
    with session_scope() as s:
        account = services.add_account(
            s, SYSTEM, kind="wechat", name=f"公众号 {appid}", organization=PROVINCE,
            credentials={"appid": appid, "secret": "s"},
            config={"base_url": f"{server.url}/wechat", "source_url": f"{server.url}/"},
        )  # fmt: skip
        s.flush()
        return account.id


def _fan_out(accounts: list[int]) -> tuple[int, list[int]]:
    """A publishing post with one pending delivery per account (as dispatch makes them)."""
    with session_scope() as s:
        post = services.create_post(s, SYSTEM, title="职工运动会", body="欢迎报名。", accounts=accounts, submit=False)
        post.state = "publishing"
        s.flush()
        made = [
            Delivery(post_id=post.id, version_id=post.current_version_id, account_id=a, state="pending")
            for a in accounts
        ]
        s.add_all(made)
        s.flush()
        return post.id, [d.id for d in made]


def _states(ids: list[int]) -> list[str]:
    with session_scope() as s:
        return [s.get(Delivery, i).state for i in ids]


def _wp_posts(server: RunningServer, site: str) -> list[dict[str, Any]]:
    state = httpx.get(f"{server.url}/wp/_sandbox/state", timeout=10).json()
    return list(state["sites"][site]["posts"])


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, tuple]]]:
    """The wake-ups the engine sends (task name, arguments), instead of sending them to a broker."""
    messages: list[tuple[str, tuple]] = []

    def enqueue(task: Task, *args: Any, countdown: float | None = None) -> None:
        messages.append((str(task), args))

    for module in (deliver, outcomes):
        monkeypatch.setattr(module, "enqueue", enqueue)
    yield messages


@pytest.fixture()
def commits() -> Iterator[list[int]]:
    """The engine's transactions (ORM sessions) that commit, counted; the adapters' progress saves, each a
    statement on a connection of its own, are not among them."""
    counted: list[int] = []

    def count(_session) -> None:
        counted.append(1)

    event.listen(Session, "after_commit", count)
    yield counted
    event.remove(Session, "after_commit", count)


def test_a_batch_posts_each_copy_once_in_two_transactions(
    backend: str, sandbox_server: RunningServer, sent, commits: list[int]
) -> None:
    sites = [_website(sandbox_server) for _ in range(4)]
    post_id, ids = _fan_out([account for account, _site in sites])
    commits.clear()
    states = deliver.deliver_many(ids)
    assert states == dict.fromkeys(ids, "published")
    # one claim and one record for the four (the post's settling is a third, after the last outcome); alone,
    # each delivery took two of its own
    assert len(commits) <= 3, len(commits)
    assert [len(_wp_posts(sandbox_server, site)) for _account, site in sites] == [1, 1, 1, 1]
    with session_scope() as s:
        assert s.get(Post, post_id).state == "published"
        assert all(s.get(Delivery, i).attempts == 1 for i in ids)
    assert deliver.deliver_many(ids) == dict.fromkeys(ids, "skipped")  # nothing is sent twice
    assert [len(_wp_posts(sandbox_server, site)) for _account, site in sites] == [1, 1, 1, 1]


def test_a_batch_claims_what_is_ready_and_skips_the_rest(backend: str, sandbox_server: RunningServer, sent) -> None:
    sites = [_website(sandbox_server) for _ in range(4)]
    _post_id, (ready, taken, later, paused) = _fan_out([account for account, _site in sites])
    with session_scope() as s:
        s.get(Delivery, taken).state = "sending"  # another worker has it
        s.get(Delivery, later).next_attempt_at = now().replace(year=now().year + 1)
        s.get(Account, sites[3][0]).paused_until = now().replace(year=now().year + 1)
    states = deliver.deliver_many([ready, taken, later, paused, 10**9])
    assert states == {ready: "published", taken: "skipped", later: "skipped", paused: "skipped", 10**9: "skipped"}
    assert _states([taken, later, paused]) == ["sending", "pending", "retry_wait"]
    assert [len(_wp_posts(sandbox_server, site)) for _account, site in sites] == [1, 0, 0, 0]


def test_a_batch_that_cannot_be_recorded_together_is_recorded_one_by_one(
    backend: str, sandbox_server: RunningServer, sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    sites = [_website(sandbox_server) for _ in range(3)]
    post_id, ids = _fan_out([account for account, _site in sites])

    def broken(*_args: Any) -> list[str]:
        raise RuntimeError("the batch's transaction failed")

    monkeypatch.setattr(deliver, "_record_batch", broken)
    assert deliver.deliver_many(ids) == dict.fromkeys(ids, "published")
    assert [len(_wp_posts(sandbox_server, site)) for _account, site in sites] == [1, 1, 1]
    with session_scope() as s:
        assert s.get(Post, post_id).state == "published"


def test_a_batchs_settling_copies_are_looked_at_by_one_task(
    backend: str, sandbox_server: RunningServer, sent, commits: list[int]
) -> None:
    apps = [_wechat(sandbox_server) for _ in range(3)]
    post_id, ids = _fan_out(apps)
    assert deliver.deliver_many(ids) == dict.fromkeys(ids, "awaiting_confirmation")
    checks = [args for name, args in sent if name == Task.CHECK_DELIVERIES.value]
    assert checks == [(sorted(ids), 1)] or checks == [(ids, 1)]
    assert not [name for name, _args in sent if name == Task.CHECK_DELIVERY.value]
    commits.clear()
    assert reconcile.check_deliveries(ids, 1) == dict.fromkeys(ids, "published")
    assert len(commits) <= 3, len(commits)  # one read, one record, the post's settling
    with session_scope() as s:
        assert s.get(Post, post_id).state == "published"
    assert reconcile.check_deliveries(ids, 2) == dict.fromkeys(ids, "published")  # settled: left alone


def test_a_status_check_that_fails_is_noted_and_the_rest_recorded(
    backend: str, sandbox_server: RunningServer, sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    apps = [_wechat(sandbox_server) for _ in range(2)]
    _post_id, (first, second) = _fan_out(apps)
    deliver.deliver_many([first, second])
    asked = reconcile._ask_status

    def flaky(loaded):
        if loaded.ctx.delivery_id == second:
            from channels.errors import TransientError

            return TransientError("HTTP 503 from freepublish/get")
        return asked(loaded)

    monkeypatch.setattr(reconcile, "_ask_status", flaky)
    assert reconcile.check_deliveries([first, second]) == {first: "published", second: "awaiting_confirmation"}
    with session_scope() as s:
        left = s.get(Delivery, second)
        assert left.last_error == "HTTP 503 from freepublish/get" and left.next_attempt_at > now()


def test_the_copies_that_link_to_the_website_copy_are_woken_in_batches(
    backend: str, sandbox_server: RunningServer, sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MATRIX_DELIVERY_BATCH", "4")
    from core.settings import reset_settings

    reset_settings()
    _post_id, (website, *dependants) = _fan_out([_website(sandbox_server)[0] for _ in range(10)])
    with session_scope() as s:
        for i in dependants:
            s.get(Delivery, i).depends_on_id = website
    assert deliver.deliver(website) == "published"
    woken = [args for name, args in sent if name in (Task.DELIVER.value, Task.DELIVER_MANY.value)]
    assert woken == [(dependants[:4],), (dependants[4:8],), (dependants[8],)]


def _wechat_jobs(server: RunningServer, account_id: int) -> list[dict[str, Any]]:
    with session_scope() as s:
        appid = account_info(s.get(Account, account_id)).credentials["appid"]
    state = httpx.get(f"{server.url}/wechat/_sandbox/state", timeout=10).json()
    return list(state["apps"][appid]["jobs"])


def test_an_attempt_whose_claim_was_taken_over_stops_before_it_posts(
    backend: str, sandbox_server: RunningServer, sent
) -> None:
    app = _wechat(sandbox_server)
    _post_id, (delivery_id,) = _fan_out([app])
    claim = deliver._claim(delivery_id)
    assert claim is not None
    with session_scope() as s:  # reconcile took it for a dead worker's (it stayed in sending too long)
        d = s.get(Delivery, delivery_id)
        d.state, d.outcome_unknown = "unconfirmed", True
    outcome = deliver._attempt(claim)
    assert isinstance(outcome.error, ClaimLost) and outcome.ok is None
    assert _wechat_jobs(sandbox_server, app) == []  # stopped at the save before freepublish/submit
    assert deliver._record(claim, error=outcome.error) == "unconfirmed"  # the new owner decides, nothing recorded
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        assert d.outcome_unknown and d.last_error is None
        attempt = s.scalars(
            select(AuditEvent).where(AuditEvent.object_id == delivery_id, AuditEvent.action == "delivery.attempt")
        ).one()
        assert attempt.detail["taken_over"] is True


def test_a_taken_over_attempt_that_did_post_is_recorded_as_the_truth(
    backend: str, sandbox_server: RunningServer, sent
) -> None:
    account, site = _website(sandbox_server)
    _post_id, (delivery_id,) = _fan_out([account])
    claim = deliver._claim(delivery_id)
    outcome = deliver._attempt(claim)  # posted (WordPress finds a post again by its slug: no save before it)
    assert outcome.ok is not None or isinstance(outcome.error, ClaimLost)
    with session_scope() as s:  # meanwhile taken over, looked up too early, and put back to be sent again
        s.get(Delivery, delivery_id).state = "retry_wait"
    assert deliver._record(claim, ok=outcome.ok, error=outcome.error) == "published"
    assert len(_wp_posts(sandbox_server, site)) == 1


def test_a_platform_that_keeps_saying_slow_down_does_not_fail_the_delivery_early(
    backend: str, sandbox_server: RunningServer, sent
) -> None:
    account, _site = _website(sandbox_server)
    _post_id, (delivery_id,) = _fan_out([account])
    with session_scope() as s:
        s.get(Delivery, delivery_id).attempts = 8  # more than MATRIX_MAX_ATTEMPTS (6) already
    claim = deliver._claim(delivery_id)
    assert deliver._record(claim, error=RateLimited("HTTP 429", retry_after=30)) == "retry_wait"
    with session_scope() as s:
        s.get(Delivery, delivery_id).next_attempt_at = now()
    claim = deliver._claim(delivery_id)
    assert deliver._record(claim, error=Unavailable("HTTP 503")) == "failed"  # an error's attempts are spent
