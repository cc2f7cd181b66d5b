"""Shared by every service: load a row or say it is not there, the audit trail, telling a post's owner, and the
lengths of the text people give."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import append as append_audit
from core.db import id_in_range
from core.errors import InvalidInput, NotFound
from core.notify import notify
from publisher.domain.models import AuditEvent, Organization, Post, RoleGrant

# The longest text people give, where it is stored in a VARCHAR column: PostgreSQL refuses a longer value with
# an error (a 500), not a message, so the services check first; the API's models declare the same bounds.
NAME_MAX = 100  # users.name, audit_events.actor, review_decisions.reviewer
LABEL_MAX = 200  # accounts.name, organizations.name
URL_MAX = 2000  # post_versions.cover_url, deliveries.remote_url
REASON_MAX = 2000  # a reviewer's reason: TEXT, but read as a line or two in the audit trail and by the editor


def check_length(what: str, value: str, limit: int) -> None:
    """:class:`InvalidInput` naming ``what`` if ``value`` is longer than ``limit`` characters."""
    if len(value) > limit:
        raise InvalidInput(f"{what} is {len(value)} characters; at most {limit}")


def audit(
    session: Session,
    actor: Any,
    action: str,
    obj: Any,
    *,
    actor_id: int | None = None,
    source: str = "",
    happened_at: datetime | None = None,
    **detail: Any,
) -> AuditEvent:
    """Append an audit event (who did what to which object; ``obj`` None: to the installation as a whole) to the
    kernel's hash chain (:func:`core.audit.append`). ``actor_id``: the acting user's id, where known; ``source``:
    where the action came from ("api 10.0.0.5", "cli", "worker"); ``happened_at``: when, if before this
    transaction (default now). Every other keyword goes into the detail.

    ``actor`` is a name, or a :class:`publisher.services.people.Principal`, whose name, id and source count."""
    if hasattr(actor, "user_id"):  # a Principal (not imported: people builds on this module)
        actor, actor_id, source = actor.name, actor.user_id, source or actor.source
    return append_audit(
        session,
        actor=actor or "system",
        action=action,
        object_type=type(obj).__name__.lower() if obj is not None else "installation",
        object_id=getattr(obj, "id", None),
        detail=detail,
        actor_id=actor_id,
        source=source,
        happened_at=happened_at,
    )


def _parents(session: Session) -> dict[int, int | None]:
    # The tree is small (a province: a few hundred unions) and read on every check: one query, no recursion
    # in SQL, so SQLite and PostgreSQL answer alike.
    return dict(session.execute(select(Organization.id, Organization.parent_id)).all())


def ancestors(session: Session, org_id: int) -> list[int]:
    """``org_id`` and its ancestors, nearest first."""
    parents = _parents(session)
    chain: list[int] = []
    current: int | None = org_id
    while current is not None and current not in chain:  # a cycle cannot be made, but never loop on one
        chain.append(current)
        current = parents.get(current)
    return chain


def subtree(session: Session, roots: Iterable[int]) -> set[int]:
    """The organisations in the subtrees of ``roots`` (the roots included)."""
    children: dict[int | None, list[int]] = {}
    for org, parent in _parents(session).items():
        children.setdefault(parent, []).append(org)
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        org = stack.pop()
        if org not in seen:
            seen.add(org)
            stack.extend(children.get(org, ()))
    return seen


def holders(session: Session, roles: Iterable[str], org_id: int) -> list[int]:
    """The users holding one of ``roles`` on ``org_id`` or an organisation above it."""
    query = select(RoleGrant.user_id).where(
        RoleGrant.role.in_(list(roles)), RoleGrant.organization_id.in_(ancestors(session, org_id))
    )
    return sorted(set(session.scalars(query)))


def notify_owner(session: Session, post: Post, kind: str, message: str) -> None:
    """Tell the post's author (or, without one, every admin) about something that needs them."""
    if post.author_id is not None:
        recipients = [post.author_id]
    else:  # the admins of the post's organisation or above it
        recipients = holders(session, ["admin"], post.organization_id) or [None]
    notify(session, recipients, kind, message, post_id=post.id)


def get(session: Session, model: type, obj_id: int, *, lock: bool = False):
    """Load one row by id or raise :class:`NotFound` naming it (an id no row can have too, without asking the
    database: out of its integer range the database would fail instead of finding nothing)."""
    if not id_in_range(obj_id):
        raise NotFound(f"{model.__name__.lower()} {obj_id} not found")
    if lock:
        obj = session.execute(select(model).where(model.id == obj_id).with_for_update()).scalar_one_or_none()
    else:
        obj = session.get(model, obj_id)
    if obj is None:
        raise NotFound(f"{model.__name__.lower()} {obj_id} not found")
    return obj
