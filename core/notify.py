"""Notifications for people: "your post's account needs re-authorisation", "a delivery failed", an alert.

Not tied to any one kind of object: a notification names its recipient, a kind and a one-line message;
``post_id`` optionally links the post it is about. Whoever decides *who* must hear of something (the
publisher for a post's author, the monitor for an alert rule's owners) calls :func:`notify`;
everybody reads theirs through :func:`notifications_for` / :func:`mark_read`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.clock import now
from core.db import Base, utcnow


class Notification(Base):
    """A message for one person (``user_id`` None: for whoever administers the installation)."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # What the message is about, for a link; kept as a plain reference so any package can notify.
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"))
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column()


def notify(
    session: Session, recipients: Iterable[int | None], kind: str, message: str, *, post_id: int | None = None
) -> list[Notification]:
    """Add one notification per recipient (in the caller's transaction)."""
    made = [
        Notification(user_id=user_id, post_id=post_id, kind=kind, message=message)
        for user_id in dict.fromkeys(recipients)
    ]
    session.add_all(made)
    return made


def notifications_for(
    session: Session, user_id: int, *, unread_only: bool = True, limit: int = 200, offset: int = 0
) -> list[Notification]:
    """A person's notifications, oldest first (the newest ``limit``, after skipping the ``offset`` newest)."""
    q = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        q = q.where(Notification.read_at.is_(None))
    rows = session.scalars(q.order_by(Notification.id.desc()).limit(limit).offset(offset)).all()
    return list(reversed(rows))


def mark_read(notifications: Iterable[Notification]) -> None:
    """Mark notifications read (those read already keep their time)."""
    t = now()
    for n in notifications:
        n.read_at = n.read_at or t
