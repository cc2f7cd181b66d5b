"""Weibo's 30 posts an hour held across two delivery worker processes of many threads (PostgreSQL + Redis).

40 posts become due at once for one Weibo account (each with its own website copy, which the Weibo post links
to). Two ``matrix worker --kind delivery`` processes of 16 threads each take them together. The limit is the
service's: the claim counts the account's posts of the last hour under the account's row lock, so exactly 30
go out and the other 10 wait in ``retry_wait`` until the hour since the first one has passed, without an
attempt spent on the wait (the sandbox would refuse a 31st with 10024, which would be one). The account's call
pace (2 calls/s) queues the 30 in the shared limiter meanwhile; a wait past the limiter's bound is no attempt
either.

The workers log JSON (``MATRIX_LOG_FORMAT=json``): their task lines carry the delivery and post ids.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.support.stack import UNION, Stack, require_services

pytestmark = [pytest.mark.timeout(240), pytest.mark.services]

POSTS = 40
LIMIT = 30  # channels.weibo.Weibo.posts_per_hour, and the sandbox's hourly_limit
THREADS = 8  # each worker holds a database connection a thread: the test PostgreSQL is shared (max_connections)
UID, TOKEN = "6600000001", "limits-weibo-token"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL + Redis; the stack's worker replaced by one screening and two delivery workers."""
    require_services()
    running = Stack("services", tmp_path_factory.mktemp("limits"), extra_env={"MATRIX_LOG_FORMAT": "json"}).start()
    try:
        first = running.procs.pop("worker")
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(30)
        running.start_worker(name="screening", args=["worker", "--kind", "screening", "-c", "1", "--loglevel", "info"])
        for i in range(2):
            running.start_worker(
                name=f"delivery{i}", args=["worker", "--kind", "delivery", "-c", str(THREADS), "--loglevel", "info"]
            )
        yield running
    finally:
        running.stop()


def _weibo_account(stack: Stack) -> int:
    from core.db import session_scope
    from publisher import services

    stack.sandbox_call("POST", "/weibo/_sandbox/accounts", json={"uid": UID, "access_token": TOKEN})
    with session_scope() as s:
        account = services.add_account(
            s,
            services.SYSTEM,
            kind="weibo",
            name="weibo limits",
            credentials={"access_token": TOKEN, "uid": UID},
            config={"base_url": "{sandbox}/weibo", "safe_domain": "{sandbox}", "rip": "127.0.0.1"},
            organization=UNION,
        )
        s.flush()
        return account.id


def _weibo_deliveries(account_id: int) -> list[Any]:
    from sqlalchemy import select

    from core.db import session_scope
    from publisher.domain.models import Delivery

    with session_scope() as s:
        rows = s.execute(
            select(
                Delivery.id,
                Delivery.post_id,
                Delivery.state,
                Delivery.attempts,
                Delivery.claimed_at,
                Delivery.claimed_by,
                Delivery.next_attempt_at,
            ).where(Delivery.account_id == account_id)
        ).all()
    return list(rows)


def _attempted_by(delivery_ids: list[int]) -> set[str]:
    from sqlalchemy import select

    from core.audit import AuditEvent
    from core.db import session_scope

    with session_scope() as s:
        return set(
            s.scalars(
                select(AuditEvent.actor).where(
                    AuditEvent.action == "delivery.attempt", AuditEvent.object_id.in_(delivery_ids)
                )
            )
        )


def test_thirty_an_hour_across_two_worker_processes(stack: Stack) -> None:
    from core.clock import now
    from core.db import session_scope
    from publisher import services

    weibo = _weibo_account(stack)
    sites = [stack.website_account(f"limits{i}") for i in range(POSTS)]  # a site each: only Weibo's pace is tested
    author = stack.editor.principal
    with session_scope() as s:
        post_ids = []
        for i, site in enumerate(sites):
            post = services.create_post(
                s, author, title=f"职工书屋第{i}期开放", body=f"第{i}期职工书屋本周开放。", accounts=[site, weibo]
            )
            s.flush()
            post_ids.append(post.id)
    stack.wait_for(
        lambda: all(stack.post(p)["state"] == "approved" for p in post_ids), timeout=90, what="all posts screened"
    )
    with session_scope() as s:  # all due at the same moment
        at = now()
        for p in post_ids:
            services.schedule_post(s, author, p, at)

    def settled() -> list[Any] | None:
        rows = _weibo_deliveries(weibo)
        published = [r for r in rows if r.state == "published"]
        waiting = [r for r in rows if r.state == "retry_wait" and r.next_attempt_at and r.next_attempt_at > now()
                   + timedelta(minutes=50)]  # fmt: skip
        return rows if len(rows) == POSTS and len(published) + len(waiting) == POSTS else None

    rows = stack.wait_for(settled, timeout=150, what=f"{LIMIT} Weibo posts published and the rest waiting")
    published = [r for r in rows if r.state == "published"]
    waiting = [r for r in rows if r.state == "retry_wait"]
    assert len(published) == LIMIT, [(r.id, r.state) for r in rows]
    assert len(waiting) == POSTS - LIMIT
    window_end = min(r.claimed_at for r in published) + timedelta(hours=1)
    assert max(r.claimed_at for r in published) < window_end
    assert all(r.next_attempt_at >= window_end for r in waiting), [(r.next_attempt_at, window_end) for r in waiting]
    # nothing burnt on the limit: neither the count nor the call pace cost a delivery an attempt
    assert all(r.attempts <= 1 for r in rows), Counter((r.attempts, r.state) for r in rows)
    # both processes took part (each attempt is audited with its worker): the count held across them
    senders = _attempted_by([r.id for r in published])
    assert len(senders) >= 2, senders
    statuses = stack.sandbox_call("GET", "/weibo/_sandbox/state")["statuses"]
    assert sum(st["uid"] == UID and not st["deleted"] for st in statuses) == LIMIT

    # The workers' JSON lines name the delivery and post of the task they were logged in.
    ours = {r.id: r.post_id for r in rows}
    lines = []
    for name in ("delivery0", "delivery1"):
        for raw in (stack.tmp / f"{name}.log").read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                lines.append(json.loads(raw))
    tagged = [ln for ln in lines if ln.get("task_name") == "matrix.deliver" and ln.get("delivery_id") in ours]
    assert tagged, lines[-5:]
    # (a post id is looked up when the task starts: a line of a task that began while the database was
    # unreachable has none, which is why .get)
    assert all(ln.get("post_id", ours[ln["delivery_id"]]) == ours[ln["delivery_id"]] for ln in tagged)
    assert any("post_id" in ln for ln in tagged)
    assert {"ts", "level", "logger", "message", "worker", "task_id"} <= set(tagged[0])
    assert TOKEN not in "\n".join(json.dumps(ln) for ln in lines)
