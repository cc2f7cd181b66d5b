"""People for tests: an organisation tree, users with roles on it, and their principals and API tokens.

The tree (``tree``) is the shape of a provincial union: 省总工会 ▸ 市总工会 ▸ 区总工会, and a neighbouring city
邻市总工会 beside 市总工会. Users are made through the services (passwords hashed, roles granted) and their
principals are what a signed-in interface would pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.db import session_scope
from publisher import services
from publisher.services import SYSTEM, Principal

PROVINCE, CITY, DISTRICT, NEIGHBOUR = "省总工会", "市总工会", "区总工会", "邻市总工会"

__all__ = ["CITY", "DISTRICT", "NEIGHBOUR", "PROVINCE", "SYSTEM", "Person", "make_tree", "make_user", "password_of"]


def password_of(name: str) -> str:
    """The password the test users are made with."""
    return f"password-of-{name}"


@dataclass(frozen=True)
class Person:
    """A test user: their principal, and an API token for ``Authorization: Bearer``."""

    principal: Principal
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """The headers an API client sends as this person."""
        return {"Authorization": f"Bearer {self.token}"}


def make_tree(session: Session) -> dict[str, int]:
    """The organisation tree (idempotent): name → id."""
    province = services.ensure_organization(session, PROVINCE)
    city = services.ensure_organization(session, CITY, parent=province)
    district = services.ensure_organization(session, DISTRICT, parent=city)
    neighbour = services.ensure_organization(session, NEIGHBOUR, parent=province)
    return {o.name: o.id for o in (province, city, district, neighbour)}


def make_user(name: str, *grants: tuple[str, str]) -> Person:
    """A user with ``(role, organisation name)`` grants, in its own transaction; their principal and a token."""
    with session_scope() as session:
        make_tree(session)
        user = services.create_user(session, SYSTEM, name, password_of(name), list(grants))
        actor = services.principal_for(user, "test")
        _, token, _ = services.issue_credential(session, actor, kind="token", name="test")
    return Person(actor, token)
