"""people: passwords, roles per organisation, tokens and sessions, the review chain

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:00:00.000000

``users.role`` / ``users.organization_id`` become one ``role_grants`` row (a user without an organisation gets
the role on each top-level organisation, which is what the role meant before: everywhere).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "role_grants",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("organization_id", sa.Integer(), sa.ForeignKey("organizations.id"), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "role", "organization_id"),
    )
    conn = op.get_bind()
    roots = [row[0] for row in conn.execute(sa.text("SELECT id FROM organizations WHERE parent_id IS NULL"))]
    for user_id, role, org_id in conn.execute(sa.text("SELECT id, role, organization_id FROM users")).all():
        for org in [org_id] if org_id is not None else roots:
            conn.execute(
                sa.text("INSERT INTO role_grants (user_id, role, organization_id) VALUES (:u, :r, :o)"),
                {"u": user_id, "r": role, "o": org},
            )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked_until", sa.DateTime(), nullable=True))
        batch.drop_column("role")
        batch.drop_column("organization_id")
    op.create_table(
        "credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_index("ix_credentials_user_id", "credentials", ["user_id"])
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("review_chain", sa.JSON(), nullable=True))
    with op.batch_alter_table("review_decisions") as batch:
        batch.add_column(sa.Column("reviewer_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("step", sa.Integer(), nullable=False, server_default="0"))
        batch.create_foreign_key("fk_review_decisions_reviewer", "users", ["reviewer_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("review_decisions") as batch:
        batch.drop_constraint("fk_review_decisions_reviewer", type_="foreignkey")
        batch.drop_column("step")
        batch.drop_column("reviewer_id")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("review_chain")
    op.drop_index("ix_credentials_user_id", "credentials")
    op.drop_table("credentials")
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("role", sa.String(length=20), nullable=False, server_default="editor"))
        batch.add_column(sa.Column("organization_id", sa.Integer(), nullable=True))
        batch.drop_column("locked_until")
        batch.drop_column("failed_logins")
        batch.drop_column("disabled")
        batch.drop_column("password_hash")
    op.drop_table("role_grants")
