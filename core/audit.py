"""The audit trail: who did what to which object, when and from where, in a tamper-evident hash chain.

Every row stores ``prev_hash``, the ``row_hash`` of the row before it (the first row: 64 zeros), and its own
``row_hash``: SHA-256 over a canonical JSON of its content *and* ``prev_hash`` (:func:`compute_hash`). Change a
row's content and its hash no longer matches; delete a row and the next one points at a hash that is not
there; move rows around and both happen. :func:`verify` walks the chain and names the first row that breaks.

The database refuses UPDATE and DELETE on ``audit_events`` (triggers, created by migration 0004), so a bug
or a careless hand in a SQL shell cannot change history. Anyone who can drop a trigger (the table's owner, a
superuser) still can, which is why the chain exists: it does not stop an edit, it makes one visible. What
the chain cannot show is rows cut off at the end (the last row has no successor to point at it); keep
:attr:`VerifyResult.head` somewhere else (a ticket, a log shipped off the machine) to detect that too.

Writers append through :func:`append` only: it serialises appenders (PostgreSQL: a transaction-scoped
advisory lock; SQLite: the write lock that :func:`core.db.engine_for` takes at BEGIN IMMEDIATE), so two
transactions never chain onto the same row, and a unique index on ``prev_hash`` makes the database refuse
a fork should anything get past that. The kernel knows no users table, so ``actor_id`` is a plain number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from types import SimpleNamespace
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Table, event, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, Session, make_transient_to_detached, mapped_column

from core.db import Base, is_postgresql, utcnow
from core.errors import InvalidInput

GENESIS = "0" * 64
"""The ``prev_hash`` of the first row."""

# The key of the PostgreSQL advisory lock that appenders queue on ("mmAUDI" in ASCII); any fixed bigint
# would do, it only has to differ from the keys other code locks on.
_APPEND_LOCK_KEY = 0x6D6D41554449

_LOCK_PG = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=_APPEND_LOCK_KEY)
# n ids from the sequence, ascending, each row beside the chain's last hash (NULL for an empty table)
_NEXT_IDS_PG = text(
    "SELECT nextval(pg_get_serial_sequence('audit_events', 'id')) AS next_id, last.row_hash AS last_hash"
    " FROM generate_series(1, :n) LEFT JOIN"
    " (SELECT row_hash FROM audit_events ORDER BY id DESC LIMIT 1) AS last ON true ORDER BY next_id"
)

SOURCE_MAX = 100  # audit_events.source
EVENTS_LIMIT_MAX = 1000  # the most rows one events() call returns


class AuditEvent(Base):
    """Append-only: who (``actor``, ``actor_id``) did what (``action``) to which object, when, from where."""

    __tablename__ = "audit_events"
    __table_args__ = (
        # one successor per row: two appenders that both chained onto the same row could not both commit
        Index("ux_audit_events_prev_hash", "prev_hash", unique=True),
        Index("ix_audit_events_object", "object_type", "object_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    # the acting user's id where there is one; no foreign key: the kernel does not know the users table,
    # and a user deleted later must not take (or block) the record of what they did
    actor_id: Mapped[int | None] = mapped_column()
    # where the action came from: "api 10.0.0.5", "cli", "web", "worker"
    source: Mapped[str] = mapped_column(String(SOURCE_MAX), default="", server_default="")
    action: Mapped[str] = mapped_column(String(60))
    object_type: Mapped[str] = mapped_column(String(30))
    object_id: Mapped[int | None] = mapped_column()
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


_table: Table = AuditEvent.__table__  # type: ignore[assignment]

# ------------------------------------------------------------------------------------------ hashing

# The fields a row's hash covers, all but row_hash itself. Changing this list (or the encoding below)
# invalidates every chain already stored: it would need a migration that re-chains the table.
HASHED_FIELDS = (
    "id",
    "at",
    "actor",
    "actor_id",
    "source",
    "action",
    "object_type",
    "object_id",
    "detail",
    "prev_hash",
)


def _canonical(value: Any) -> str:
    """The one JSON text of ``value``: sorted keys, compact, UTF-8 as is; NaN/Infinity refused (not JSON)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _iso(at: datetime) -> str:
    """``at`` as ISO 8601 in UTC to the microsecond (a naive value is taken as UTC, as the columns store it)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def compute_hash(row: Any) -> str:
    """The SHA-256 (hex) a row with these fields must carry: ``row`` is an :class:`AuditEvent` or any object
    (a result row) with the attributes in :data:`HASHED_FIELDS`."""
    fields = {name: getattr(row, name) for name in HASHED_FIELDS}
    fields["at"] = _iso(fields["at"])
    return hashlib.sha256(_canonical(fields).encode("utf-8")).hexdigest()


def _json_default(value: Any) -> Any:
    # times are the one kind of value callers commonly pass that JSON has no type for; anything else is a
    # programming error, better refused here than stored as a repr nobody can read back
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"audit detail value of type {type(value).__name__} is not JSON: {value!r:.80}")


def _as_stored(detail: dict[str, Any]) -> dict[str, Any]:
    """``detail`` as the database will give it back: through JSON and back (tuples become lists, int keys
    strings, times ISO strings), so the hash taken now is the hash :func:`verify` computes later."""
    return json.loads(json.dumps(detail, default=_json_default, allow_nan=False))


# ------------------------------------------------------------------------------------------ writing


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: int | None,
    detail: dict[str, Any],
    actor_id: int | None = None,
    source: str = "",
    happened_at: datetime | None = None,
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction (written, not committed). ``happened_at``:
    when it happened, where that was before this transaction (default: now).

    On PostgreSQL this takes an advisory lock that is held until the transaction ends: appenders queue there,
    so keep audited transactions short (no network calls after :func:`append`). Several appends in one
    transaction chain onto each other. Raises :class:`TypeError` / :class:`ValueError` for a ``detail``
    that is not JSON (a time is accepted and stored as ISO text).

    Inside :func:`appended_at_commit` the event is only queued on the session and written just before it
    commits; the object returned then has no ``id`` or hashes yet.
    """
    fields: dict[str, Any] = {
        "at": happened_at or utcnow(),
        "actor": actor,
        "actor_id": actor_id,
        "source": (source or "")[:SOURCE_MAX],  # informational: a long one is cut, never a reason to refuse
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "detail": _as_stored(detail),
    }
    if _AT_COMMIT.get():
        session.info.setdefault(_PENDING, []).append(fields)
        return AuditEvent(**fields)
    return _write(session, fields)


def _write(session: Session, fields: dict[str, Any]) -> AuditEvent:
    """Chain ``fields`` onto the last row and insert it (under the appenders' lock); the row's object is put in
    the session as if loaded."""
    _write_many(session, [fields])
    # The row is in the database: hand back its object, in the session as if loaded (nothing left to write).
    event = AuditEvent(**fields)
    make_transient_to_detached(event)
    session.add(event)
    return event


def _write_many(session: Session, batch: list[dict[str, Any]]) -> None:
    """Chain the rows of ``batch`` onto the last row, in order, and insert them: one lock, one read of the chain's
    end and one INSERT for the whole batch (the delivery engine's transactions each write their events at
    commit, while every other appender waits on the lock)."""
    # No autoflush and a Core INSERT: auditing flushes none of the caller's pending changes, so it never moves
    # the point where the caller's own writes fail.
    with session.no_autoflush:
        if is_postgresql(session):
            # Before reading the last row: the next appender waits here until this transaction ends, then
            # (READ COMMITTED: a fresh snapshot per statement) sees the rows this one added.
            session.execute(_LOCK_PG)
            # The id is part of the hash, so it is taken before the INSERT (rows cannot be updated afterwards):
            # from the sequence, under the lock, so ids grow in chain order; the chain's end in the same
            # statement.
            rows = session.execute(_NEXT_IDS_PG, {"n": len(batch)}).all()
            ids = [r.next_id for r in rows]
            prev = rows[0].last_hash or GENESIS
        else:
            # SQLite: the ids the database would have chosen itself (max + 1 on), under its write lock.
            last = session.execute(select(_table.c.id, _table.c.row_hash).order_by(_table.c.id.desc()).limit(1)).first()
            start = (last.id if last else 0) + 1
            ids = list(range(start, start + len(batch)))
            prev = last.row_hash if last else GENESIS
        for fields, id_ in zip(batch, ids, strict=True):
            fields["id"], fields["prev_hash"] = id_, prev
            fields["row_hash"] = prev = compute_hash(SimpleNamespace(**fields))
        session.execute(_table.insert(), batch)


# Events queued by append() inside appended_at_commit(), per session, until it commits.
_PENDING = "core.audit.pending"
_AT_COMMIT: ContextVar[bool] = ContextVar("core.audit.at_commit", default=False)


@contextmanager
def appended_at_commit() -> Iterator[None]:
    """Within this block (or a function it decorates), :func:`append` queues each event on its session and
    writes it just before the session commits.

    Why: the appenders' lock is held from the first append to the commit, so one transaction that audits early
    and then does more work holds every other appender up for all of it. The delivery engine's transactions
    (a claim, an outcome) each audit first and then settle the post; with many workers in flight the lock
    made them run one at a time. Written at commit, each holds it for its last statements only. The chain is
    the same: ids and hashes are taken under the lock, in commit order; a transaction that rolls back leaves
    none of its events. Not for code that reads back the events it has just appended in the same transaction.
    """
    token = _AT_COMMIT.set(True)
    try:
        yield
    finally:
        _AT_COMMIT.reset(token)


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        _write_many(session, pending)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


# ------------------------------------------------------------------------------------------ reading


def events(
    session: Session,
    *,
    actor: str | None = None,
    object_type: str | None = None,
    object_id: int | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEvent]:
    """Events matching every filter given, newest first: ``since`` inclusive, ``until`` exclusive; at most
    ``limit`` (1..:data:`EVENTS_LIMIT_MAX`) after skipping ``offset``. :class:`InvalidInput` outside those."""
    if not 1 <= limit <= EVENTS_LIMIT_MAX:
        raise InvalidInput(f"limit is {limit}; from 1 to {EVENTS_LIMIT_MAX}")
    if offset < 0:
        raise InvalidInput(f"offset is {offset}; at least 0")
    q = select(AuditEvent)
    for column, value in (
        (AuditEvent.actor, actor),
        (AuditEvent.object_type, object_type),
        (AuditEvent.object_id, object_id),
        (AuditEvent.action, action),
    ):
        if value is not None:
            q = q.where(column == value)
    if since is not None:
        q = q.where(AuditEvent.at >= since)
    if until is not None:
        q = q.where(AuditEvent.at < until)
    return list(session.scalars(q.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)).all())


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found. ``problem`` is one line naming the first bad row ("" when ``ok``);
    ``rows`` counts the rows checked (all of them when ``ok``); ``head`` is the last good row's hash."""

    ok: bool
    rows: int
    first_bad_id: int | None = None
    problem: str = ""
    head: str = GENESIS


_COLUMNS = [_table.c[name] for name in (*HASHED_FIELDS, "row_hash")]


def _batches(execute: Callable[..., Any], batch_size: int) -> Iterator[list[Any]]:
    # keyset pagination (id > last seen), so memory stays at one batch whatever the table's size
    after = None
    while True:
        q = select(*_COLUMNS).order_by(_table.c.id).limit(batch_size)
        if after is not None:
            q = q.where(_table.c.id > after)
        batch = execute(q).all()
        if not batch:
            return
        yield batch
        after = batch[-1].id


def verify(target: Session | Connection | Engine, *, batch_size: int = 1000) -> VerifyResult:
    """Walk the whole chain in id order and report the first row that was changed, or that follows a gap
    (a row deleted) or rows out of order. Reads ``batch_size`` rows at a time; writes nothing."""
    if isinstance(target, Engine):
        with target.connect() as conn:
            return _verify(conn.execute, batch_size)
    return _verify(target.execute, batch_size)


def _verify(execute: Callable[..., Any], batch_size: int) -> VerifyResult:
    rows, head = 0, GENESIS
    for batch in _batches(execute, batch_size):
        for row in batch:
            rows += 1
            # The link first: a row that points elsewhere than at its predecessor means one is missing in
            # between, or the order changed (content moved to another id also breaks that row's own hash,
            # but "moved" is the better account of it).
            if row.prev_hash != head:
                problem = f"a row before audit row {row.id} is missing (deleted), or rows were reordered"
                return VerifyResult(False, rows, row.id, problem, head)
            if row.row_hash != compute_hash(row):
                return VerifyResult(False, rows, row.id, f"audit row {row.id} was changed after it was written", head)
            head = row.row_hash
    return VerifyResult(True, rows, head=head)
