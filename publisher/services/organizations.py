"""Organisations (the matrix's tree) and the people in them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from publisher.domain.models import ROLES, Organization, User
from publisher.services.common import LABEL_MAX, NAME_MAX, check_length


def ensure_organization(session: Session, name: str, parent: Organization | None = None) -> Organization:
    """Get or create an organisation by name."""
    check_length("organisation name", name, LABEL_MAX)
    org = session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        org = Organization(name=name, parent_id=parent.id if parent else None)
        session.add(org)
        session.flush()
    return org


def ensure_user(session: Session, name: str, role: str, org: Organization | None = None) -> User:
    """Get or create a user by name (a new user's role must be one of :data:`ROLES`)."""
    check_length("user name", name, NAME_MAX)
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
        user = User(name=name, role=role, organization_id=org.id if org else None)
        session.add(user)
        session.flush()
    return user
