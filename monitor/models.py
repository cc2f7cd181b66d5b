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
- A source of kind ``comments`` (migration ``0012_monitor_comments``) reads readers' comments on the organisation's
  own published posts (or one account's) through the channel adapters; each comment is an item naming its
  delivery, account and post, and a **comment cursor** per source and delivery says where the last poll stopped.
- ``monitor_host_slots`` are leases that hold the per-host concurrency limit across processes and machines.
- An **alert channel** (migration ``0009_monitor_alerts``) is a WeCom, DingTalk or Feishu robot or an e-mail
  address list of an organisation, its secrets encrypted; an **alert send** is one alert on one channel (once:
  the unique key), with its state, attempts and how many of its split parts have gone.
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
    """A feed (RSS, Atom or JSON Feed) polled every ``interval_s``; ``state`` is ``active`` or ``paused``.

    ``kind`` is ``feed`` or ``comments``: the comments on the organisation's own published posts, or on one
    account's (``account_id``); its ``url`` is then a name of that scope (``comments:org:<id>``), unique per
    organisation like a feed's URL.
    """

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
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))  # comments: one account only
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
    # a comment on one of our posts: under which delivery, on which account, of which post ("in whose comments")
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"))


class CommentCursor(Base):
    """Where a comments source's last poll of one delivery stopped (the adapter's cursor, JSON), so the next
    fetches only what is new. ``state``: ``active``, or ``gone`` once the platform says the post is no more."""

    __tablename__ = "monitor_comment_cursors"
    __table_args__ = (UniqueConstraint("source_id", "delivery_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("monitor_sources.id"))
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"))
    cursor: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(20), default="active")
    comments: Mapped[int] = mapped_column(Integer, default=0)  # comments read through this cursor, all polls
    last_error: Mapped[str | None] = mapped_column(Text)
    last_polled_at: Mapped[datetime | None] = mapped_column()


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
    # a band's newest rows are read by (band_key, id DESC): one short range of this index (migration 0014)
    __table_args__ = (Index("ix_monitor_lsh_bands_band_key_id", "band_key", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    band_key: Mapped[str] = mapped_column(String(40))
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


class AlertChannel(Base):
    """Where an organisation's alerts go besides the in-app notification: a robot webhook or e-mail.

    ``secrets`` is the encrypted JSON of what must not be shown back (webhook URL with its key, signing secret,
    SMTP password); ``config`` the rest (keyword, rules, SMTP host and recipients). ``state``: ``active``, or
    ``broken`` when the platform refused the configuration (the owner is told; nothing more is sent).
    """

    __tablename__ = "monitor_alert_channels"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    kind: Mapped[str] = mapped_column(String(20))  # wecom | dingtalk | feishu | email
    secrets: Mapped[bytes] = mapped_column(LargeBinary)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    quiet_start: Mapped[str | None] = mapped_column(String(5))  # "22:00", in the installation's zone
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    state: Mapped[str] = mapped_column(String(20), default="active")
    state_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Burst(Base):
    """An hour whose volume rose far over its own baseline (EWMA and z-score), once per key and hour.

    ``key`` names what was counted: ``rule:<id>``, ``need:<org id>:<need>`` or ``story:<id>``; ``terms`` the
    words that rose (jieba keywords of the hour against the baseline hours).
    """

    __tablename__ = "monitor_bursts"
    __table_args__ = (UniqueConstraint("key", "hour_start"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), index=True)
    hour_start: Mapped[datetime] = mapped_column()
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("monitor_rules.id"))
    count: Mapped[int] = mapped_column(Integer)
    baseline: Mapped[float] = mapped_column(Float)
    zscore: Mapped[float] = mapped_column(Float)
    terms: Mapped[list[str]] = mapped_column(JSON, default=list)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertSend(Base):
    """One alert on one channel, at most once (the unique key); sent part by part after ``next_at``.

    ``state``: ``queued`` | ``held`` (quiet hours) | ``retry`` (a transient error) — all due at ``next_at`` —
    then ``sent`` or ``failed``. ``parts_sent`` of ``parts_total`` have gone: a retry goes on from the next one.
    """

    __tablename__ = "monitor_alert_sends"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel_id"),
        UniqueConstraint("burst_id", "channel_id"),
        Index("ix_monitor_alert_sends_due", "state", "next_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    # what is sent: a rule's alert, or a burst (exactly one of the two)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("monitor_alerts.id"), index=True)
    burst_id: Mapped[int | None] = mapped_column(ForeignKey("monitor_bursts.id"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("monitor_alert_channels.id"))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    # the message as rendered when queued: a retry sends the same parts, so ``parts_sent`` stays meaningful
    title: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    parts_total: Mapped[int] = mapped_column(Integer, default=0)
    parts_sent: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column()  # a worker is sending it until then
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportSchedule(Base):
    """When an organisation's daily report goes out (migration ``0011_monitor_reports``): one per organisation.

    ``at`` is the local time of day (``"08:00"``); ``covers`` the day reported, ``yesterday`` or ``today``;
    ``channels`` alert-channel ids (robots get a summary and a link, e-mail channels the page and the PDF);
    ``emails`` further addresses, sent through the first e-mail channel's SMTP server.
    """

    __tablename__ = "monitor_report_schedules"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), unique=True)
    at: Mapped[str] = mapped_column(String(5))
    covers: Mapped[str] = mapped_column(String(10), default="yesterday")
    channels: Mapped[list[int]] = mapped_column(JSON, default=list)
    emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)  # days whose time came before it are not sent


class ReportSend(Base):
    """One day's report to one target of a schedule, at most once (the unique key): ``channel:<id>`` or
    ``emails``. ``state``: ``queued`` | ``retry`` (due at ``next_at``), then ``sent`` or ``failed``."""

    __tablename__ = "monitor_report_sends"
    __table_args__ = (
        UniqueConstraint("schedule_id", "day", "target"),
        Index("ix_monitor_report_sends_due", "state", "next_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("monitor_report_schedules.id"))
    day: Mapped[str] = mapped_column(String(10))  # the local day reported, ISO
    target: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
