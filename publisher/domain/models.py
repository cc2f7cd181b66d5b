"""The data model (SQLAlchemy 2, typed). The database is the source of truth; broker messages are wake-ups.

Times are stored as UTC. ``PostVersion`` and ``AuditEvent`` rows are immutable: an attempt to update or
delete one raises :class:`ImmutableRowError`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.audit import AuditEvent  # the model lives in the kernel; re-exported here
from core.db import Base, utcnow

ROLES = ("editor", "reviewer", "monitor", "admin")


class Organization(Base):
    """A node of the matrix: a provincial union, a city union, a district union…"""

    __tablename__ = "organizations"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    moderation_policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lists_version: Mapped[int] = mapped_column(default=0)
    # The review chain of this organisation's posts (publisher.services.chains); None: its parent's
    review_chain: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    parent: Mapped[Organization | None] = relationship(remote_side=[id])


class OrganizationAlias(Base):
    """Another name people write for an organisation (江苏省总工会: 省总工会, 江苏总工会, 省总): the monitor counts a
    mention of any of them as a mention of the organisation (``scores["mentions"]``).

    A row per alias, not a JSON list on the organisation: the database keeps an alias unique per organisation
    (two admins adding at once cannot both store it, nor lose each other's), and one select reads every alias of
    the tree for the monitor. Kept as written; uniqueness of the *normalised* form across the tree is checked by
    :mod:`publisher.services.organizations`, since the normaliser may change and stored forms would go stale.
    """

    __tablename__ = "organization_aliases"
    __table_args__ = (UniqueConstraint("organization_id", "alias"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    alias: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who signs in. What they may do is in their :class:`RoleGrant` rows, each on an organisation."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Argon2id hash string (parameters and salt inside); None: the user cannot sign in with a password
    password_hash: Mapped[str | None] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    grants: Mapped[list[RoleGrant]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class RoleGrant(Base):
    """One role of a user on one organisation; it covers the organisation's whole subtree."""

    __tablename__ = "role_grants"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), primary_key=True)


class Credential(Base):
    """A bearer secret of a user: a personal API token (scripts, the CLI) or a web sign-in session.

    Only the SHA-256 of the secret is stored (the secrets are 256 random bits, so a fast hash is enough; a
    password hash is for guessable secrets); it is shown once, when it is made.
    """

    __tablename__ = "credentials"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # token | session
    name: Mapped[str] = mapped_column(String(100), default="")
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_hash: Mapped[str | None] = mapped_column(String(64))  # sessions: what unsafe requests must echo
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    source: Mapped[str] = mapped_column(String(100), default="")

    user: Mapped[User] = relationship()


class Account(Base):
    """One account on one platform. Credentials are Fernet-encrypted at rest."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("kind", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    kind: Mapped[str] = mapped_column(String(30))
    name: Mapped[str] = mapped_column(String(200))
    credentials_enc: Mapped[bytes] = mapped_column(LargeBinary)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    paused_until: Mapped[datetime | None] = mapped_column()
    moderation_policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    organization: Mapped[Organization] = relationship()


class Post(Base):
    """A post: its current version, its target accounts and where it is in its lifecycle."""

    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(30), default="draft", index=True)
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("post_versions.id", use_alter=True, name="fk_posts_current_version")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    targets: Mapped[list[PostTarget]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    current_version: Mapped[PostVersion | None] = relationship(foreign_keys=[current_version_id])


class PostTarget(Base):
    """An account a post is meant for."""

    __tablename__ = "post_targets"
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)


class PostVersion(Base):
    """One immutable version of a post's content."""

    __tablename__ = "post_versions"
    __table_args__ = (UniqueConstraint("post_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    number: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    cover_url: Mapped[str | None] = mapped_column(String(2000))
    # Per-platform text where an editor wants one platform's copy different (a shorter Weibo text, a WeChat
    # title within its 64 characters): {kind: {"title": ..., "body": ...}}, either key optional. Screened and
    # hashed with the rest, so an approval covers every variant too.
    variants: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @staticmethod
    def hash_content(
        title: str, body: str, summary: str, cover_url: str | None, variants: dict[str, dict[str, str]] | None = None
    ) -> str:
        """SHA-256 over the content fields: an approval is bound to exactly this content."""
        fields: list[Any] = [title, body, summary, cover_url or ""]
        if variants:  # left out when there are none, so the hashes of versions without variants stay the same
            fields.append({k: variants[k] for k in sorted(variants)})
        payload = json.dumps(fields, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def screened_parts(self) -> list[tuple[str, str]]:
        """The fields screening reads, in order, as (field, text); empty fields are left out. A platform's own
        text is a field of its own, ``<kind>.title`` / ``<kind>.body``."""
        parts = [("title", self.title), ("summary", self.summary), ("body", self.body)]
        for kind in sorted(self.variants or {}):
            variant = self.variants[kind]
            parts += [(f"{kind}.{key}", variant[key]) for key in ("title", "body") if variant.get(key)]
        return [(f, text) for f, text in parts if text]

    def text_for(self, kind: str | None) -> tuple[str, str]:
        """The title and body a platform of ``kind`` gets: its own variant where the editor wrote one."""
        variant = (self.variants or {}).get(kind or "", {})
        return variant.get("title") or self.title, variant.get("body") or self.body

    def screened_text(self) -> str:
        """What screening reads: the fields joined by line breaks (hit offsets index this text)."""
        return "\n".join(text for _field, text in self.screened_parts())


class Screening(Base):
    """The moderation verdict for one version."""

    __tablename__ = "screenings"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("post_versions.id"), index=True)
    decision: Mapped[str] = mapped_column(String(10))
    verdict: Mapped[dict[str, Any]] = mapped_column()
    model_version: Mapped[str] = mapped_column(String(100), default="")
    lexicon_version: Mapped[str] = mapped_column(String(100), default="")
    # What the version was last screened against (publisher.services.screening.engine_fingerprint): the built-in
    # lexicon, the organisation chain's list versions and the model. A live post whose fingerprint is not the
    # current one is screened again (publisher.services.rescreen); "" (screened before 0013): unknown, stale.
    fingerprint: Mapped[str] = mapped_column(String(300), default="")
    rescreened_at: Mapped[datetime | None] = mapped_column()
    # Set by `matrix post rescreen` (a person asked for it): screened again even with the current fingerprint
    rescreen_requested_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LiveFlag(Base):
    """A live post that a re-screen flagged (the rules changed since it was published): the new verdict as
    evidence, waiting for a reviewer of the post's organisation to retract it everywhere or keep it.
    Nothing is retracted without a person. ``state``: open | retracted | kept | superseded (a newer flag)."""

    __tablename__ = "live_flags"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("post_versions.id"))
    fingerprint: Mapped[str] = mapped_column(String(300))
    decision: Mapped[str] = mapped_column(String(10))  # review | reject: what the re-screen said
    verdict: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(20), default="open", index=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column()


class ReviewDecision(Base):
    """A person's decision, bound to the content hash it was made on."""

    __tablename__ = "review_decisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("post_versions.id"))
    content_hash: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(10))  # approve | reject
    reason: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(100), default="")
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    step: Mapped[int] = mapped_column(default=0)  # which step of the chain (0: the first)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Schedule(Base):
    """When a post goes out; one pending schedule per post."""

    __tablename__ = "schedules"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    due_at: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending | dispatched | cancelled
    dispatched_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    """One post version to one account. ``progress`` holds remote ids saved between platform calls."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("schedule_id", "account_id"),
        Index("ix_deliveries_state_next", "state", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("post_versions.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id"))
    depends_on_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    state: Mapped[str] = mapped_column(String(30), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    claimed_at: Mapped[datetime | None] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    outcome_unknown: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    remote_id: Mapped[str | None] = mapped_column(String(200))
    remote_url: Mapped[str | None] = mapped_column(String(2000))
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    account: Mapped[Account] = relationship()


class MetricSnapshot(Base):
    """Engagement numbers of one delivery at one time (the history, not only the latest)."""

    __tablename__ = "metric_snapshots"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
    reads: Mapped[int | None] = mapped_column()
    likes: Mapped[int | None] = mapped_column()
    shares: Mapped[int | None] = mapped_column()
    comments: Mapped[int | None] = mapped_column()


class ModerationTerm(Base):
    """An organisation's own deny- or allow-list entry."""

    __tablename__ = "moderation_terms"
    __table_args__ = (UniqueConstraint("organization_id", "list", "term"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    list: Mapped[str] = mapped_column(String(10))  # deny | allow
    term: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(20), default="custom")
    severity: Mapped[str] = mapped_column(String(10), default="review")


class ChannelToken(Base):
    """Shared platform access tokens (single-flight cache on the embedded default); see channels.tokens."""

    __tablename__ = "channel_tokens"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    token: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[float | None] = mapped_column(Float)
    lock_owner: Mapped[str | None] = mapped_column(String(64))
    lock_until: Mapped[float | None] = mapped_column(Float)


class ReviewFeedback(Base):
    """A reviewer's judgement of screening, kept as a labelled example: ``false_positive`` (an override, or an
    approval of what screening flagged: the text is harmless) or ``missed_harm`` (a reject of what screening
    passed; ``category`` when the reviewer named one)."""

    __tablename__ = "review_feedback"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("post_versions.id"))
    kind: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    hits: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"hits": [...]} as screening found them
    category: Mapped[str | None] = mapped_column(String(20))
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TermProposal(Base):
    """An allow-list proposal an admin decided on: a term reviewers overrode often (``accepted`` / ``dismissed``)."""

    __tablename__ = "term_proposals"
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    term: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(10))
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class Media(Base):
    """An uploaded image (a post's cover), kept in the database so every worker on every machine can read it.

    Rows are immutable and shared by content: the same bytes uploaded twice in an organisation are one row.
    A version refers to one as ``cover_url = "media:<id>"``.
    """

    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("organization_id", "sha256"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(200), default="")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImmutableRowError(RuntimeError):
    """An immutable row (a post version, an audit event) was about to be changed."""


def _forbid(kind: str):
    def handler(_mapper, _conn, target):
        raise ImmutableRowError(f"{type(target).__name__} rows cannot be {kind}")

    return handler


for _cls in (PostVersion, AuditEvent, Media):
    event.listen(_cls, "before_update", _forbid("updated"))
    event.listen(_cls, "before_delete", _forbid("deleted"))
