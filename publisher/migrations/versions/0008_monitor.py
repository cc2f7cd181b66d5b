"""monitor: feed sources, items stored once, stories, LSH bands, rules, rule hits, alerts, per-host slots

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "monitor_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("etag", sa.String(length=500), nullable=True),
        sa.Column("last_modified", sa.String(length=100), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("fetch_count", sa.Integer(), nullable=False),
        sa.Column("parse_count", sa.Integer(), nullable=False),
        sa.Column("last_fetched_at", sa.DateTime(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(), nullable=True),
        sa.Column("next_poll_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization_id", "url"),
    )
    op.create_index("ix_monitor_sources_organization_id", "monitor_sources", ["organization_id"])
    op.create_index("ix_monitor_sources_due", "monitor_sources", ["state", "next_poll_at"])

    op.create_table(
        "monitor_stories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_monitor_stories_last_seen_at", "monitor_stories", ["last_seen_at"])

    op.create_table(
        "monitor_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("story_id", sa.Integer(), sa.ForeignKey("monitor_stories.id"), nullable=False),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("monitor_sources.id"), nullable=False),
        sa.Column("link", sa.String(length=2000), nullable=False),
        sa.Column("link_hash", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("summary_html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=True),
        sa.Column("fetched_at", sa.DateTime(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=True),
        sa.Column("negativity", sa.Float(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("content_hash"),
    )
    for column in ("story_id", "source_id", "link_hash", "fetched_at"):
        op.create_index(f"ix_monitor_items_{column}", "monitor_items", [column])

    op.create_table(
        "monitor_sightings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("monitor_items.id"), nullable=False),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("monitor_sources.id"), nullable=False),
        sa.Column("entry_key", sa.String(length=64), nullable=False),
        sa.Column("link", sa.String(length=2000), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "entry_key"),
    )
    op.create_index("ix_monitor_sightings_item_id", "monitor_sightings", ["item_id"])

    op.create_table(
        "monitor_lsh_bands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("band_key", sa.String(length=40), nullable=False),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("monitor_items.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_monitor_lsh_bands_band_key", "monitor_lsh_bands", ["band_key"])
    op.create_index("ix_monitor_lsh_bands_item_id", "monitor_lsh_bands", ["item_id"])

    op.create_table(
        "monitor_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_monitor_rules_organization_id", "monitor_rules", ["organization_id"])

    op.create_table(
        "monitor_rule_hits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), sa.ForeignKey("monitor_rules.id"), nullable=False),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("monitor_items.id"), nullable=False),
        sa.Column("story_id", sa.Integer(), sa.ForeignKey("monitor_stories.id"), nullable=False),
        sa.Column("matched", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule_id", "item_id"),
    )
    op.create_index("ix_monitor_rule_hits_rule_id", "monitor_rule_hits", ["rule_id"])
    op.create_index("ix_monitor_rule_hits_item_id", "monitor_rule_hits", ["item_id"])

    op.create_table(
        "monitor_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), sa.ForeignKey("monitor_rules.id"), nullable=False),
        sa.Column("story_id", sa.Integer(), sa.ForeignKey("monitor_stories.id"), nullable=False),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("monitor_items.id"), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule_id", "story_id", "window_start"),
    )
    op.create_index("ix_monitor_alerts_rule_id", "monitor_alerts", ["rule_id"])

    op.create_table(
        "monitor_host_slots",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("host", "slot"),
    )


def downgrade() -> None:
    for table in (
        "monitor_host_slots",
        "monitor_alerts",
        "monitor_rule_hits",
        "monitor_rules",
        "monitor_lsh_bands",
        "monitor_sightings",
        "monitor_items",
        "monitor_stories",
        "monitor_sources",
    ):
        op.drop_table(table)
