"""Shared by every service: load a row or say it is not there, the audit trail, telling a post's owner."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.notify import notify
from publisher.domain.models import AuditEvent, Post, User


def audit(session: Session, actor: str, action: str, obj: Any, **detail: Any) -> None:
    """Append an audit event (who did what to which object; ``obj`` None: to the installation as a whole)."""
    session.add(
        AuditEvent(
            actor=actor or "system",
            action=action,
            object_type=type(obj).__name__.lower() if obj is not None else "installation",
            object_id=getattr(obj, "id", None),
            detail=detail,
        )
    )


def notify_owner(session: Session, post: Post, kind: str, message: str) -> None:
    """Tell the post's author (or, without one, every admin) about something that needs them."""
    if post.author_id is not None:
        recipients = [post.author_id]
    else:
        recipients = list(session.scalars(select(User.id).where(User.role == "admin")).all()) or [None]
    notify(session, recipients, kind, message, post_id=post.id)


def get(session: Session, model: type, obj_id: int, *, lock: bool = False):
    """Load one row by id or raise :class:`NotFound` naming it."""
    if lock:
        obj = session.execute(select(model).where(model.id == obj_id).with_for_update()).scalar_one_or_none()
    else:
        obj = session.get(model, obj_id)
    if obj is None:
        raise NotFound(f"{model.__name__.lower()} {obj_id} not found")
    return obj
