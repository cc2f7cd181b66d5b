"""The audit trail's hash chain (core.audit): appends chain, in one transaction and from concurrent ones; an edit,
a deletion or a reordering made behind the application's back is named by ``verify``; the database refuses
UPDATE and DELETE; migration 0004 chains the rows an installation already has.

Each test runs on SQLite (the ``env`` installation) and on PostgreSQL (a database of its own), which is skipped
when unreachable unless ``MATRIX_TEST_REQUIRE_SERVICES=1`` (CI), where that fails instead. Tests that tamper
with rows drop the triggers first, as an attacker with the database's owner rights can.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from core import audit
from core.audit import GENESIS, AuditEvent
from core.db import UTCDateTime, get_engine, session_scope
from core.errors import InvalidInput
from core.settings import get_settings, reset_settings
from publisher import migrate, services
from tests.support.stack import pg_database_or_skip

T = AuditEvent.__table__

# ------------------------------------------------------------------------------------------- fixtures


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]


@pytest.fixture(params=BACKENDS)
def blank(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The configured database URL of an installation not migrated yet, on each backend."""
    monkeypatch.setenv("MATRIX_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MATRIX_MODERATION_CLASSIFIER", "0")
    monkeypatch.setenv("MATRIX_SECRET_KEY", "test-" + "k" * 40)
    for name in ("MATRIX_OLD_SECRET_KEYS", "MATRIX_DATABASE_URL", "MATRIX_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    drop = None
    if request.param == "postgresql":
        url, drop = pg_database_or_skip()
        monkeypatch.setenv("MATRIX_DATABASE_URL", url)
    reset_settings()
    try:
        yield get_settings().database_url
    finally:
        reset_settings()
        if drop is not None:
            drop()


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A migrated installation's engine: the ``env`` installation (SQLite), or PostgreSQL migrated the same way."""
    if request.param == "sqlite":
        request.getfixturevalue("env")
        yield get_engine()
        return
    url, drop = pg_database_or_skip()
    monkeypatch.setenv("MATRIX_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MATRIX_MODERATION_CLASSIFIER", "0")
    monkeypatch.setenv("MATRIX_SECRET_KEY", "test-" + "k" * 40)
    monkeypatch.setenv("MATRIX_DATABASE_URL", url)
    monkeypatch.delenv("MATRIX_OLD_SECRET_KEYS", raising=False)
    reset_settings()
    try:
        migrate.upgrade()
        yield get_engine()
    finally:
        reset_settings()
        drop()


# -------------------------------------------------------------------------------------------- helpers


def _append(session: Any, n: int, **fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "actor": "alice",
        "action": "post.edit",
        "object_type": "post",
        "object_id": n,
        "detail": {"n": n},
        **fields,
    }
    return audit.append(session, **values)


def _chain(engine: Engine, n: int) -> list[int]:
    """``n`` events, one transaction each; their ids."""
    ids = []
    for i in range(n):
        with session_scope() as s:
            ids.append(_append(s, i).id)
    assert audit.verify(engine).ok
    return ids


def _drop_guard(engine: Engine) -> None:
    """What an attacker with the owner's rights does first: drop the append-only triggers."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("DROP TRIGGER audit_events_no_change ON audit_events"))
            conn.execute(sa.text("DROP TRIGGER audit_events_no_truncate ON audit_events"))
        else:
            conn.execute(sa.text("DROP TRIGGER audit_events_no_update"))
            conn.execute(sa.text("DROP TRIGGER audit_events_no_delete"))


def _rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.select(T).order_by(T.c.id)).all()


# ------------------------------------------------------------------------------------------- appending


def test_a_chain_of_appends_verifies_and_reads_back_newest_first(db: Engine) -> None:
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    odd_details: list[dict[Any, Any]] = [
        {},
        {"text": "工会 “matrix” ✓", "nested": {"b": [1, 2.5, None, True], "a": {"z": "é"}}},
        {"due_at": at, "ids": (3, 4), 7: "int key", "big": 2**62, "small": -1e-300},
    ]
    with session_scope() as s:
        first = audit.append(
            s,
            actor="bob",
            action="account.add",
            object_type="account",
            object_id=1,
            detail={},
            actor_id=42,
            source="cli",
        )
    for detail in odd_details:
        with session_scope() as s:
            _append(s, 2, detail=detail, source="api 10.0.0.5")

    result = audit.verify(db)
    rows = _rows(db)
    assert result == audit.VerifyResult(ok=True, rows=4, head=rows[-1].row_hash)
    assert rows[0].prev_hash == GENESIS and rows[0].row_hash == first.row_hash
    assert [r.prev_hash for r in rows[1:]] == [r.row_hash for r in rows[:-1]]
    # what is stored is what was hashed: the JSON form, not the Python values given
    assert rows[-1].detail == {"due_at": at.isoformat(), "ids": [3, 4], "7": "int key", "big": 2**62, "small": -1e-300}
    assert (rows[0].actor_id, rows[0].source, rows[1].source) == (42, "cli", "api 10.0.0.5")

    with session_scope() as s:
        assert [e.action for e in audit.events(s)] == ["post.edit"] * 3 + ["account.add"]
        assert [e.id for e in audit.events(s, actor="bob")] == [first.id]
        assert [e.id for e in audit.events(s, object_type="post", object_id=2, limit=2, offset=1)] == [
            r.id for r in rows[2:0:-1]
        ]
        assert audit.events(s, since=datetime.now(UTC) + timedelta(minutes=1)) == []
        assert len(audit.events(s, until=datetime.now(UTC) + timedelta(minutes=1), action="post.edit")) == 3
        with pytest.raises(InvalidInput):
            audit.events(s, limit=0)
        with pytest.raises(TypeError, match="not JSON"):
            audit.append(s, actor="x", action="y", object_type="z", object_id=None, detail={"x": object()})


def test_the_services_audit_function_writes_through_the_chain(db: Engine) -> None:
    with session_scope() as s:
        services.audit(s, "cli", "secrets.rotate", None, actor_id=7, source="cli", accounts=3)
        services.audit(s, "", "post.submit", None)
    rows = _rows(db)
    assert [(r.actor, r.actor_id, r.source, r.object_type, r.detail) for r in rows] == [
        ("cli", 7, "cli", "installation", {"accounts": 3}),
        ("system", None, "", "installation", {}),
    ]
    assert audit.verify(db).ok


def test_several_appends_in_one_transaction_chain_onto_each_other(db: Engine) -> None:
    _chain(db, 2)
    with session_scope() as s:
        a = _append(s, 10)
        with s.no_autoflush:  # the chain must not depend on the caller's flush settings
            b = _append(s, 11)
        c = _append(s, 12)
        assert (b.prev_hash, c.prev_hash) == (a.row_hash, b.row_hash)
    with session_scope() as s:
        kept = _append(s, 13)
    with pytest.raises(RuntimeError), session_scope() as s:
        _append(s, 14)
        raise RuntimeError("rolled back")
    with session_scope() as s:
        d = _append(s, 15)
    assert d.prev_hash == kept.row_hash  # not the rolled-back row's
    assert audit.verify(db, batch_size=2) == audit.VerifyResult(True, 7, head=d.row_hash)


def test_concurrent_appends_make_one_chain(db: Engine) -> None:
    """Threads on connections of their own append at once, each holding its transaction open a moment after
    appending (when a second appender could read the same last row): one chain, no fork, none lost."""
    threads, per_thread = 6, 8
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with session_scope() as s:
                    _append(s, k * 100 + i, actor=f"thread-{k}")
                    time.sleep(0.005)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors, errors
    result = audit.verify(db)
    assert result.ok and result.rows == threads * per_thread, result
    rows = _rows(db)
    assert len({r.prev_hash for r in rows}) == len(rows)
    assert len({r.actor for r in rows}) == threads


def test_a_fork_is_refused_by_the_database(db: Engine) -> None:
    """Should two rows ever name the same predecessor (an appender not going through ``append``), the unique
    index on prev_hash refuses the second."""
    _chain(db, 1)
    last = _rows(db)[-1]
    with pytest.raises(sa.exc.IntegrityError), db.begin() as conn:
        conn.execute(
            T.insert().values(
                id=last.id + 5,
                at=datetime.now(UTC),
                actor="mallory",
                action="x",
                object_type="post",
                object_id=None,
                detail={},
                prev_hash=last.prev_hash,
                row_hash="f" * 64,
            )
        )


# -------------------------------------------------------------------------------------------- tampering


def test_an_edited_row_is_named(db: Engine) -> None:
    ids = _chain(db, 5)
    _drop_guard(db)
    with db.begin() as conn:
        conn.execute(T.update().where(T.c.id == ids[2]).values(detail={"n": 99}))
    assert audit.verify(db) == audit.VerifyResult(
        ok=False,
        rows=3,
        first_bad_id=ids[2],
        problem=f"audit row {ids[2]} was changed after it was written",
        head=_rows(db)[1].row_hash,
    )
    with db.begin() as conn:  # any column counts, and the first bad row is the one named
        conn.execute(T.update().where(T.c.id == ids[1]).values(source="web"))
    assert audit.verify(db, batch_size=1).first_bad_id == ids[1]


def test_an_edit_that_rehashes_its_row_is_named_at_the_next_row_and_a_rewritten_tail_changes_the_head(
    db: Engine,
) -> None:
    ids = _chain(db, 4)
    head = audit.verify(db).head
    _drop_guard(db)
    rows = _rows(db)
    forged = rows[1]._asdict() | {"actor": "mallory"}
    with db.begin() as conn:
        conn.execute(
            T.update().where(T.c.id == ids[1]).values(actor="mallory", row_hash=audit.compute_hash(_Row(forged)))
        )
    result = audit.verify(db)
    assert (result.ok, result.first_bad_id) == (False, ids[2])
    assert result.problem.startswith(f"a row before audit row {ids[2]} is missing (deleted)")
    # Rewriting every hash after it passes the chain; only a head kept elsewhere shows it.
    prev = audit.compute_hash(_Row(forged))
    tail = _rows(db)[2:]
    with db.begin() as conn:
        for row in tail:
            fields = row._asdict() | {"prev_hash": prev}
            prev = audit.compute_hash(_Row(fields))
            conn.execute(T.update().where(T.c.id == row.id).values(prev_hash=fields["prev_hash"], row_hash=prev))
    result = audit.verify(db)
    assert result.ok and result.head != head


class _Row:
    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)


def test_a_deleted_row_is_named_by_the_row_after_it(db: Engine) -> None:
    ids = _chain(db, 5)
    _drop_guard(db)
    with db.begin() as conn:
        conn.execute(T.delete().where(T.c.id == ids[2]))
    result = audit.verify(db)
    assert (result.ok, result.first_bad_id, result.rows) == (False, ids[3], 3)
    assert result.problem == f"a row before audit row {ids[3]} is missing (deleted), or rows were reordered"
    with db.begin() as conn:  # the first row too: the second no longer starts from the genesis hash
        conn.execute(T.delete().where(T.c.id == ids[0]))
    assert audit.verify(db).first_bad_id == ids[1]


def test_reordered_rows_are_detected(db: Engine) -> None:
    ids = _chain(db, 5)
    _drop_guard(db)
    rows = {r.id: r._asdict() for r in _rows(db)}
    # Whole rows moved: 2nd and 4th trade places (their content, hashes and all, under each other's id).
    with db.begin() as conn:
        conn.execute(T.delete().where(T.c.id.in_([ids[1], ids[3]])))
        conn.execute(T.insert(), [rows[ids[3]] | {"id": ids[1]}, rows[ids[1]] | {"id": ids[3]}])
    result = audit.verify(db)
    assert (result.ok, result.first_bad_id) == (False, ids[1])
    assert "reordered" in result.problem


def test_swapped_details_are_detected(db: Engine) -> None:
    ids = _chain(db, 4)
    _drop_guard(db)
    with db.begin() as conn:
        conn.execute(T.update().where(T.c.id == ids[1]).values(detail={"n": 2}))
        conn.execute(T.update().where(T.c.id == ids[2]).values(detail={"n": 1}))
    result = audit.verify(db)
    assert (result.ok, result.first_bad_id) == (False, ids[1])
    assert result.problem == f"audit row {ids[1]} was changed after it was written"


# ----------------------------------------------------------------------------------------- the guard


def test_the_database_refuses_update_and_delete(db: Engine) -> None:
    ids = _chain(db, 2)
    statements = [
        T.update().where(T.c.id == ids[0]).values(actor="mallory"),
        T.delete().where(T.c.id == ids[1]),
        T.delete(),
    ]
    if db.dialect.name == "postgresql":
        statements.append(sa.text("TRUNCATE audit_events"))
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.begin() as conn:
            conn.execute(statement)
    assert audit.verify(db) == audit.VerifyResult(True, 2, head=_rows(db)[-1].row_hash)


# ------------------------------------------------------------------------------------------ migration


def test_migrating_from_0003_chains_the_rows_already_there(blank: str) -> None:
    migrate.upgrade(revision="0003")
    legacy = sa.table(
        "audit_events",
        sa.column("at", UTCDateTime()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("object_type", sa.String()),
        sa.column("object_id", sa.Integer()),
        sa.column("detail", sa.JSON()),
    )
    t0 = datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC)
    old = [
        {
            "at": t0 + timedelta(seconds=i),
            "actor": "editor" if i % 2 else "system",
            "action": "post.create",
            "object_type": "post" if i % 3 else "installation",
            "object_id": i if i % 3 else None,
            "detail": {"i": i, "accounts": [1, 2], "note": "审核 ✓", "nested": {"b": 1, "a": None}},
        }
        for i in range(2500)  # more than one backfill batch
    ]
    engine = get_engine()
    with engine.begin() as conn:
        conn.execute(legacy.insert(), old)

    migrate.upgrade(revision="0004")
    result = audit.verify(engine, batch_size=700)
    assert result.ok and result.rows == len(old), result
    rows = _rows(engine)
    assert rows[0].prev_hash == GENESIS and {(r.source, r.actor_id) for r in rows} == {("", None)}
    assert rows[5].at == old[5]["at"] and rows[5].detail == old[5]["detail"]
    with session_scope() as s:
        new = _append(s, 1)
    assert new.prev_hash == rows[-1].row_hash and audit.verify(engine).ok
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(T.delete())

    # and back: the columns and the triggers go, the rows stay
    command.downgrade(migrate.alembic_config(blank), "0003")
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_events")).scalar_one() == len(old) + 1
        conn.execute(sa.text("DELETE FROM audit_events"))
        columns = {c["name"] for c in sa.inspect(conn).get_columns("audit_events")}
    assert {"prev_hash", "row_hash", "source", "actor_id"}.isdisjoint(columns)
