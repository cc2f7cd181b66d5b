"""Organisations: the matrix's tree (people and their roles on it: :mod:`publisher.services.people`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from publisher.domain.models import Organization
from publisher.services.common import LABEL_MAX, check_length


def ensure_organization(session: Session, name: str, parent: Organization | None = None) -> Organization:
    """Get or create an organisation by name."""
    check_length("organisation name", name, LABEL_MAX)
    org = session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        org = Organization(name=name, parent_id=parent.id if parent else None)
        session.add(org)
        session.flush()
    return org
