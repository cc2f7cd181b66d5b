"""re-screening what is live: each screening's engine fingerprint, and the live posts a re-screen flagged

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("screenings") as batch:
        # "" on the rows screened before: unknown, so a live post among them is screened again once
        batch.add_column(sa.Column("fingerprint", sa.String(length=300), nullable=False, server_default=""))
        batch.add_column(sa.Column("rescreened_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("rescreen_requested_at", sa.DateTime(), nullable=True))
    op.create_table(
        "live_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), sa.ForeignKey("posts.id"), nullable=False),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("post_versions.id"), nullable=False),
        sa.Column("fingerprint", sa.String(length=300), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("verdict", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("decided_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_live_flags_post_id", "live_flags", ["post_id"])
    op.create_index("ix_live_flags_state", "live_flags", ["state"])


def downgrade() -> None:
    op.drop_index("ix_live_flags_state", table_name="live_flags")
    op.drop_index("ix_live_flags_post_id", table_name="live_flags")
    op.drop_table("live_flags")
    with op.batch_alter_table("screenings") as batch:
        batch.drop_column("rescreen_requested_at")
        batch.drop_column("rescreened_at")
        batch.drop_column("fingerprint")
