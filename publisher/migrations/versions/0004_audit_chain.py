"""audit chain: actor_id, source and a hash chain on audit_events (core.audit), append-only triggers

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-15 10:00:00.000000

Rows already there are chained in id order (``actor_id`` NULL, ``source`` ""), so :func:`core.audit.verify`
passes on an upgraded installation. Then the database refuses UPDATE and DELETE on the table: triggers on
SQLite and PostgreSQL (there TRUNCATE too). The table's owner or a superuser can still drop them; the chain
is what shows an edit made that way.

SQLite: a later migration that rebuilds ``audit_events`` in batch mode (copy to a new table) loses the
triggers with the old table; such a migration must create them again.
"""

from collections.abc import Sequence
from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

from core.audit import GENESIS, compute_hash
from core.db import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000

# The table as this migration sees it (not the model, which later migrations may change).
_audit = sa.table(
    "audit_events",
    sa.column("id", sa.BigInteger()),
    sa.column("at", UTCDateTime()),
    sa.column("actor", sa.String()),
    sa.column("actor_id", sa.Integer()),
    sa.column("source", sa.String()),
    sa.column("action", sa.String()),
    sa.column("object_type", sa.String()),
    sa.column("object_id", sa.Integer()),
    sa.column("detail", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("row_hash", sa.String()),
)

_SQLITE_TRIGGERS = (
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END""",
)

_PG_TRIGGERS = (
    """CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit rows are append-only';
    END $$""",
    """CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
    # row triggers do not fire on TRUNCATE
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
)


def _backfill(conn: sa.Connection) -> None:
    """Chain the rows already there, in id order, a batch at a time."""
    c = _audit.c
    columns = [c.id, c.at, c.actor, c.actor_id, c.source, c.action, c.object_type, c.object_id, c.detail]
    set_hashes = (
        _audit.update()
        .where(c.id == sa.bindparam("row_id"))
        .values(prev_hash=sa.bindparam("new_prev"), row_hash=sa.bindparam("new_hash"))
    )
    prev, after = GENESIS, 0
    while True:
        rows = conn.execute(sa.select(*columns).where(c.id > after).order_by(c.id).limit(_BATCH)).all()
        if not rows:
            return
        changes = []
        for row in rows:
            fields = {**row._asdict(), "source": row.source or "", "prev_hash": prev}
            prev = compute_hash(SimpleNamespace(**fields))
            changes.append({"row_id": row.id, "new_prev": fields["prev_hash"], "new_hash": prev})
        conn.execute(set_hashes, changes)
        after = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("actor_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("source", sa.String(length=100), server_default="", nullable=False))
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("row_hash", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    _backfill(conn)
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("row_hash", existing_type=sa.String(length=64), nullable=False)
        batch.create_index("ux_audit_events_prev_hash", ["prev_hash"], unique=True)
        batch.create_index("ix_audit_events_object", ["object_type", "object_id"], unique=False)
    # last: the batch rebuild above (SQLite) would drop triggers made before it
    for ddl in _PG_TRIGGERS if conn.dialect.name == "postgresql" else _SQLITE_TRIGGERS:
        conn.execute(sa.text(ddl))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events"))
        conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events"))
        conn.execute(sa.text("DROP FUNCTION IF EXISTS audit_events_append_only()"))
    else:
        conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_index("ix_audit_events_object")
        batch.drop_index("ux_audit_events_prev_hash")
        batch.drop_column("row_hash")
        batch.drop_column("prev_hash")
        batch.drop_column("source")
        batch.drop_column("actor_id")
