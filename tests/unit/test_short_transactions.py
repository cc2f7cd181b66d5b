"""No long work inside a transaction (issue 12, item 2): screening runs between two short transactions, and a
database that stays locked is answered with 503 and Retry-After, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from channels.wechat import default_cover_png
from core.db import BUSY_REASON, BUSY_RETRY_AFTER_S, get_engine, session_scope
from core.settings import get_settings, reset_settings
from moderation import Verdict
from publisher import services
from publisher.delivery.reconcile import reconcile
from publisher.domain.models import AuditEvent, Delivery, Post, Screening
from publisher.interfaces.api import _database_busy, app
from publisher.services.screening import ScreeningJob, run_screening
from tests.support.people import CITY, SYSTEM, Person, make_user

# A writer waits this long for another's lock: short, so a lock held across the screening would fail the test.
BUSY_TIMEOUT_S = 0.3


@pytest.fixture()
def editor(env: Path, rules_only: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Person]:
    monkeypatch.setenv("MATRIX_DB_BUSY_TIMEOUT_S", str(BUSY_TIMEOUT_S))
    reset_settings()
    person = make_user("editor", ("editor", CITY))
    yield person
    reset_settings()


def _post(editor: Person, body: str = "今天下午三点，工会召开全体会员大会。") -> tuple[int, int]:
    with session_scope() as s:
        account = services.add_account(s, SYSTEM, kind="manual", name="手工号", credentials={}, organization=CITY)
        s.flush()
        post = services.create_post(s, editor.principal, title="通知", body=body, accounts=[account.id])
        s.flush()
        return post.id, post.current_version_id


def _other_writer_commits() -> None:
    """A write transaction on a connection of its own, as another process would make it (fails if locked)."""
    conn = sqlite3.connect(get_settings().database_url.split("///", 1)[1], timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE posts SET updated_at = updated_at WHERE id = 0")
        conn.execute("COMMIT")
    finally:
        conn.close()


def _screened_audits(post_id: int) -> int:
    with session_scope() as s:
        return s.scalar(
            select(func.count(AuditEvent.id)).where(
                AuditEvent.object_id == post_id, AuditEvent.action.like("post.screened.%")
            )
        )


def test_the_engine_runs_with_no_transaction_open(editor: Person, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the engine screens, another process can write: no lock is held across the screening."""
    post_id, version_id = _post(editor)
    engine_run = ScreeningJob.run
    seen: list[str] = []

    def run_while_another_writes(job: ScreeningJob) -> Verdict:
        _other_writer_commits()  # would raise "database is locked" after BUSY_TIMEOUT_S if a writer held it
        seen.append(job.text)
        return engine_run(job)

    monkeypatch.setattr(ScreeningJob, "run", run_while_another_writes)
    screening = run_screening(version_id)
    assert seen == ["通知\n今天下午三点，工会召开全体会员大会。"]
    assert screening.decision == "pass"
    with session_scope() as s:
        assert s.get(Post, post_id).state == "approved"
    assert _screened_audits(post_id) == 1


def test_an_edit_made_while_the_engine_runs_wins_over_its_result(
    editor: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The result of the older version is stored, but the post stays in screening for the newer one."""
    post_id, first = _post(editor, body="报名请致电王老师 13800138000。")  # a phone number: review
    engine_run = ScreeningJob.run

    def run_while_the_editor_edits(job: ScreeningJob) -> Verdict:
        if job.version_id == first:  # the editor removes the number while the first version screens
            with session_scope() as s:
                services.edit_post(s, editor.principal, post_id, body="报名请到工会办公室。")
        return engine_run(job)

    monkeypatch.setattr(ScreeningJob, "run", run_while_the_editor_edits)
    stale = run_screening(first)
    assert stale.version_id == first and stale.decision == "review"  # stored, for the record
    with session_scope() as s:
        post = s.get(Post, post_id)
        assert post.state == "screening" and post.current_version_id != first  # …and it changed nothing
        second = post.current_version_id
    assert _screened_audits(post_id) == 0

    current = run_screening(second)
    assert current.decision == "pass"
    with session_scope() as s:
        assert s.get(Post, post_id).state == "approved"
    assert _screened_audits(post_id) == 1


def test_a_version_screened_twice_keeps_its_first_result_and_moves_the_post_once(editor: Person) -> None:
    """A duplicate wake-up (a redelivered message) neither screens again nor moves the post again."""
    post_id, version_id = _post(editor)
    first = run_screening(version_id)
    again = run_screening(version_id)
    assert again.id == first.id
    with session_scope() as s:
        assert s.scalar(select(func.count(Screening.id)).where(Screening.version_id == version_id)) == 1
        assert s.get(Post, post_id).state == "approved"
    assert _screened_audits(post_id) == 1


def test_a_database_locked_by_another_writer_is_a_503_with_retry_after(editor: Person) -> None:
    """Another process holds the write lock past the busy timeout: one line and Retry-After, and /health still
    answers (its check takes no write lock)."""
    get_engine()  # the database's WAL mode is set by our engine's first connection
    with TestClient(app) as client:
        assert client.get("/posts", headers=editor.headers).status_code == 200
        holder = sqlite3.connect(get_settings().database_url.split("///", 1)[1])
        try:
            holder.execute("BEGIN IMMEDIATE")  # a worker in the middle of a write
            for path in ("/posts", "/accounts"):  # the identity lookup is the first to wait
                r = client.get(path, headers=editor.headers)
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert r.json() == {"detail": BUSY_REASON}
                assert r.headers["retry-after"] == str(BUSY_RETRY_AFTER_S)
            health = client.get("/health")
            assert health.status_code == 200 and health.json()["database"] == "ok", health.text
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert client.get("/posts", headers=editor.headers).status_code == 200


def test_the_api_answers_a_busy_database_in_a_route_with_503_and_other_database_errors_stay_500() -> None:
    """The route's own transaction (after the identity lookup) is answered the same way; an operational error
    that is not about a lock is a fault, and stays one."""
    busy = OperationalError("UPDATE posts …", {}, sqlite3.OperationalError("database is locked"))
    request = Request({"type": "http", "method": "GET", "path": "/posts", "headers": []})
    answer = asyncio.run(_database_busy(request, busy))
    assert answer.status_code == 503 and json.loads(answer.body) == {"detail": BUSY_REASON}
    assert answer.headers["retry-after"] == str(BUSY_RETRY_AFTER_S)
    broken = OperationalError("SELECT …", {}, sqlite3.OperationalError("no such table: posts"))
    with pytest.raises(OperationalError):
        asyncio.run(_database_busy(request, broken))


def test_reconcile_reads_an_uploaded_cover_after_its_own_transaction(editor: Person) -> None:
    """Asking the platform about an unconfirmed delivery with an uploaded cover: the cover's bytes are read in a
    transaction of their own, after the one that loaded the delivery closed (inside it, on SQLite, the read
    would wait for that transaction's own write lock and fail as "database is locked")."""
    with session_scope() as s:
        account = services.add_account(
            s,
            SYSTEM,
            kind="website",
            name="官网",
            credentials={"username": "u", "app_password": "p"},
            config={"base_url": "http://127.0.0.1:1/wp/a"},  # nothing listens: the lookup cannot be made
            organization=CITY,
        )
        s.flush()
        cover = services.media_ref(services.upload_image(s, editor.principal, None, default_cover_png(), "封面.png"))
        post = services.create_post(
            s, editor.principal, title="通知", body="工会开展职工技能培训。", accounts=[account.id], cover_url=cover
        )
        s.flush()
        post.state = "publishing"
        delivery = Delivery(
            post_id=post.id, version_id=post.current_version_id, account_id=account.id, state="unconfirmed"
        )
        s.add(delivery)
        s.flush()
        delivery_id = delivery.id
    counts = reconcile()
    assert counts["unconfirmed"] == 1
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        assert d.state == "unconfirmed" and "locked" not in (d.last_error or ""), d.last_error
        assert d.last_error and d.next_attempt_at is not None  # noted: asked again on a later round
