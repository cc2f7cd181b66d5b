"""The database: one engine per process and URL, the session scope, the declarative base and shared column
types, and :func:`after_commit` for work (broker wake-ups) that must wait until a transaction has committed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, TypeDecorator, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from core.settings import get_settings

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------- schema types


def utcnow() -> datetime:
    """Aware current UTC time (column defaults; services use :func:`core.clock.now`, which drills can shift)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC (portable to SQLite) and returns them aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# The largest id any table hands out: primary keys are INTEGER on PostgreSQL (SQLite's go to 2**63 - 1). An id
# outside 1..ID_MAX names no row, and passed to the database it is an error there (a 500, not a 404), so
# lookups check it first (:func:`id_in_range`).
ID_MAX = 2**31 - 1


def id_in_range(value: int) -> bool:
    """True if ``value`` could be the id of a row (1..:data:`ID_MAX`)."""
    return 1 <= value <= ID_MAX


class Base(DeclarativeBase):
    """The declarative base of every table, in every package (one metadata, one migration history)."""

    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


# ------------------------------------------------------------------------------------------ engines


def engine_for(url: str, busy_timeout_s: float | None = None) -> Engine:
    """A pooled engine for ``url`` (one per URL and busy timeout; default: ``MATRIX_DB_BUSY_TIMEOUT_S``).

    SQLite gets WAL (readers never wait for the writer), a busy timeout (a writer waits for the other's lock
    instead of failing at once), and ``BEGIN IMMEDIATE`` (writers serialised at their start). That only works
    while transactions are short: nothing slow (screening, platform calls, file work) runs inside one.
    """
    if busy_timeout_s is None:
        busy_timeout_s = get_settings().db_busy_timeout_s
    return _engine_for(url, float(busy_timeout_s), get_settings().db_pool_size)


# Connection.execution_options(**READ_ONLY) before a connection's first statement: on SQLite its transaction
# starts with a plain (deferred) BEGIN, a read that takes no write lock, so it answers while a writer holds
# the lock (health checks). Only for work that writes nothing: upgrading a deferred read to a write can fail
# at once with SQLITE_BUSY, whatever the busy timeout.
READ_ONLY = {"matrix_read_only": True}


@lru_cache(maxsize=8)
def _engine_for(url: str, busy_timeout_s: float, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            # pysqlite's own transaction handling defers BEGIN; take the write lock up front instead
            # (BEGIN IMMEDIATE) so a conditional UPDATE that claims a delivery is atomic between processes.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            read_only = conn.get_execution_options().get("matrix_read_only")
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    # sized for the process's concurrency: a delivery worker's threads each hold a connection for a moment
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=10)


def get_engine() -> Engine:
    """The engine for the configured database."""
    return engine_for(get_settings().database_url)


def is_postgresql(session: Session) -> bool:
    """True when the session talks to PostgreSQL (row locks with SKIP LOCKED are available)."""
    return session.get_bind().dialect.name == "postgresql"


# SQLite's "database is locked" family; PostgreSQL's lock_not_available, serialization_failure and
# deadlock_detected. Each means another transaction held what this one needed: try again, not a bug.
_SQLITE_BUSY = ("database is locked", "database table is locked", "database schema is locked")
_PG_BUSY = {"55P03", "40001", "40P01"}


# What a client is told when the database stayed busy (one line), and how many seconds to wait before asking again.
BUSY_REASON = "the database is busy with other work; try again in a moment"
BUSY_RETRY_AFTER_S = 2


def is_database_busy(exc: BaseException) -> bool:
    """True when ``exc`` (a SQLAlchemy error) says another transaction held a lock this one waited for in
    vain: a temporary condition (a worker busy), which the API answers with 503 and Retry-After."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) in _PG_BUSY or getattr(orig, "pgcode", None) in _PG_BUSY:
        return True
    return isinstance(orig, sqlite3.OperationalError) and str(orig).strip().lower().startswith(_SQLITE_BUSY)


def session_factory() -> sessionmaker[Session]:
    """A sessionmaker bound to the configured engine (objects stay usable after commit)."""
    return _sessionmaker_for(get_engine())


@lru_cache(maxsize=8)
def _sessionmaker_for(engine: Engine) -> sessionmaker[Session]:
    # One per engine: each sessionmaker makes a Session subclass of its own, and every session event listener
    # is copied onto it; made per unit of work, that cost more CPU than a delivery's own SQL (profiled).
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    session = session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# ------------------------------------------------------------------------------------- after commit

_AFTER_COMMIT = "matrix_after_commit"


def after_commit(session: Session, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``fn(*args, **kwargs)`` after ``session`` commits; dropped on rollback.

    A service that changes rows and wants a worker to act sends the wake-up this way, so a worker never looks
    for a row that is not committed yet, and a rolled-back change wakes nobody.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append((fn, args, kwargs))


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for fn, args, kwargs in session.info.pop(_AFTER_COMMIT, []):
        try:
            fn(*args, **kwargs)
        except Exception:  # a lost wake-up is recovered by the pollers; never fail the committed work
            log.exception(
                "after-commit %s%r failed; the poller will pick the work up", getattr(fn, "__name__", fn), args
            )


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
