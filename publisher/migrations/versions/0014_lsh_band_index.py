"""monitor: LSH bands indexed by (band_key, id), so "the newest rows of a band" is one short index range

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 11:00:00.000000

On PostgreSQL the planner answered ``WHERE band_key = :k ORDER BY id DESC LIMIT 4`` by walking the primary key
backwards and filtering, which grows with the table (1.3 s a read at 200,000 bands); SQLite sorted each band's
rows. The single-column index is the new one's prefix, so it goes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_monitor_lsh_bands_band_key_id", "monitor_lsh_bands", ["band_key", "id"])
    op.drop_index("ix_monitor_lsh_bands_band_key", table_name="monitor_lsh_bands")


def downgrade() -> None:
    op.create_index("ix_monitor_lsh_bands_band_key", "monitor_lsh_bands", ["band_key"])
    op.drop_index("ix_monitor_lsh_bands_band_key_id", table_name="monitor_lsh_bands")
