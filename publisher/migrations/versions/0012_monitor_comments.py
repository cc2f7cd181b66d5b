"""monitor comment sources: readers' comments on our own published posts, with a cursor per delivery

A source of kind ``comments`` may be bound to one account (``monitor_sources.account_id``); an item that is a
comment names the delivery, account and post it was written under (``monitor_items.delivery_id`` …: "in whose
comments"); ``monitor_comment_cursors`` keeps, per source and delivery, where the last poll stopped.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("monitor_sources") as batch:
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_monitor_sources_account_id", "accounts", ["account_id"], ["id"])
    with op.batch_alter_table("monitor_items") as batch:
        batch.add_column(sa.Column("delivery_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("post_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_monitor_items_delivery_id", "deliveries", ["delivery_id"], ["id"])
        batch.create_foreign_key("fk_monitor_items_account_id", "accounts", ["account_id"], ["id"])
        batch.create_foreign_key("fk_monitor_items_post_id", "posts", ["post_id"], ["id"])
        batch.create_index("ix_monitor_items_delivery_id", ["delivery_id"])
        batch.create_index("ix_monitor_items_account_id", ["account_id"])
    op.create_table(
        "monitor_comment_cursors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("monitor_sources.id"), nullable=False),
        sa.Column("delivery_id", sa.Integer(), sa.ForeignKey("deliveries.id"), nullable=False),
        sa.Column("cursor", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("comments", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_polled_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "delivery_id"),
    )


def downgrade() -> None:
    op.drop_table("monitor_comment_cursors")
    with op.batch_alter_table("monitor_items") as batch:
        batch.drop_index("ix_monitor_items_account_id")
        batch.drop_index("ix_monitor_items_delivery_id")
        batch.drop_constraint("fk_monitor_items_post_id", type_="foreignkey")
        batch.drop_constraint("fk_monitor_items_account_id", type_="foreignkey")
        batch.drop_constraint("fk_monitor_items_delivery_id", type_="foreignkey")
        batch.drop_column("post_id")
        batch.drop_column("account_id")
        batch.drop_column("delivery_id")
    with op.batch_alter_table("monitor_sources") as batch:
        batch.drop_constraint("fk_monitor_sources_account_id", type_="foreignkey")
        batch.drop_column("account_id")
