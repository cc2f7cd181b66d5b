"""The monitor's tables, on the one declarative base (:class:`core.db.Base`), migrated by ``0008_monitor``.

::

    monitor_sources ──< monitor_sightings >── monitor_items >── monitor_stories
           │                                       │
           └── (scope of) monitor_rules ──< monitor_rule_hits, monitor_alerts

- A **source** is a feed URL with its interval, owner organisation, tags and fetch state (validators for
  conditional GET, failures in a row, when it is next due).
- An **item** is one piece of content, stored once however many sources carry it; each source that carried it
  has a **sighting** (keyed by the entry's GUID, else link, else title + text, per source: Miniflux's key).
- A **story** groups near-duplicate items across sources (MinHash LSH; the bands are in ``monitor_lsh_bands``).
- A **rule** is a keyword query owned by an organisation and scoped to sources; a **rule hit** is one item it
  matched, and an **alert** is at most one per story per rule per window.
- ``monitor_host_slots`` are leases that hold the per-host concurrency limit across processes and machines.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow

URL_MAX = 2000
NAME_MAX = 200
TITLE_MAX = 500


class Source(Base):
    """A feed (RSS, Atom or JSON Feed) polled every ``interval_s``; ``state`` is ``active`` or ``paused``."""

    __tablename__ = "monitor_sources"
    __table_args__ = (
        UniqueConstraint("organization_id", "url"),
        Index("ix_monitor_sources_due", "state", "next_poll_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    url: Mapped[str] = mapped_column(String(URL_MAX))
    kind: Mapped[str] = mapped_column(String(20), default="feed")
    interval_s: Mapped[int] = mapped_column(Integer, default=3600)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(20), default="active")
    state_reason: Mapped[str | None] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    failures: Mapped[int] = mapped_column(Integer, default=0)  # in a row
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status: Mapped[int | None] = mapped_column(Integer)
    fetch_count: Mapped[int] = mapped_column(Integer, default=0)
    parse_count: Mapped[int] = mapped_column(Integer, default=0)  # bodies parsed: a 304 adds none
    last_fetched_at: Mapped[datetime | None] = mapped_column()
    last_success_at: Mapped[datetime | None] = mapped_column()
    next_poll_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column()  # a poll is in flight until then
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Story(Base):
    """Near-duplicate items across sources: one event, told and retold."""

    __tablename__ = "monitor_stories"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX), default="")
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Item(Base):
    """One piece of content, stored once; its scores are filled in when it is stored."""

    __tablename__ = "monitor_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("monitor_stories.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("monitor_sources.id"), index=True)  # the first to carry it
    link: Mapped[str] = mapped_column(String(URL_MAX), default="")
    link_hash: Mapped[str] = mapped_column(String(64), index=True)
    # unique: two workers storing the same content at once meet here, and the second keeps a sighting only
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX), default="")
    summary_html: Mapped[str] = mapped_column(Text, default="")  # sanitised (nh3): safe to show
    text: Mapped[str] = mapped_column(Text, default="")  # plain text: what is scored and matched
    author: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    published_at: Mapped[datetime | None] = mapped_column()
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)  # MinHash values (uint64), for similarity
    negativity: Mapped[float] = mapped_column(Float, default=0.0)
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)  # moderation, needs, mentions, negativity detail


class Sighting(Base):
    """One source carried one item; ``entry_key`` is the source's own key for the entry (GUID, link…)."""

    __tablename__ = "monitor_sightings"
    __table_args__ = (UniqueConstraint("source_id", "entry_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("monitor_items.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("monitor_sources.id"))
    entry_key: Mapped[str] = mapped_column(String(64))
    link: Mapped[str] = mapped_column(String(URL_MAX), default="")
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class LshBand(Base):
    """One band of one item's MinHash: items sharing a band key are candidates for one story."""

    __tablename__ = "monitor_lsh_bands"
    id: Mapped[int] = mapped_column(primary_key=True)
    band_key: Mapped[str] = mapped_column(String(40), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("monitor_items.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Rule(Base):
    """A keyword query of an organisation, over the sources in its scope (see :mod:`monitor.query`)."""

    __tablename__ = "monitor_rules"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    query: Mapped[str] = mapped_column(Text)
    # {"sources": [ids], "tags": [...]}: empty lists mean every source of the organisation's subtree
    scope: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RuleHit(Base):
    """A rule matched an item (once per rule and item, however many sources carried it)."""

    __tablename__ = "monitor_rule_hits"
    __table_args__ = (UniqueConstraint("rule_id", "item_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("monitor_rules.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("monitor_items.id"), index=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("monitor_stories.id"))
    matched: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"terms": [...], "spans": [[a, b], ...]}
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    """At most one per story per rule per window (``window_start``): the no-repeat guarantee is the key."""

    __tablename__ = "monitor_alerts"
    __table_args__ = (UniqueConstraint("rule_id", "story_id", "window_start"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("monitor_rules.id"), index=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("monitor_stories.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("monitor_items.id"))
    window_start: Mapped[datetime] = mapped_column()
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HostSlot(Base):
    """A lease on one of a host's concurrency slots (``holder`` None or ``expires_at`` past: free)."""

    __tablename__ = "monitor_host_slots"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float, default=0.0)
