"""post_versions.variants: per-platform title/body where an editor wants one platform's copy different

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 12:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("post_versions") as batch:
        batch.add_column(sa.Column("variants", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("post_versions") as batch:
        batch.drop_column("variants")
