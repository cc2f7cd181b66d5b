"""An organisation's own moderation deny- and allow-lists."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.broker import Task, enqueue
from core.db import after_commit
from core.errors import InvalidInput
from publisher.domain.models import ModerationTerm, Organization
from publisher.services.chains import review_chain_of
from publisher.services.common import audit, get
from publisher.services.people import Principal, require, visible_orgs

TERM_MAX = 200  # moderation_terms.term is VARCHAR(200)


def add_moderation_term(
    session: Session,
    actor: Principal,
    org_id: int,
    term: str,
    *,
    list_: str,
    category: str = "custom",
    severity: str = "review",
) -> tuple[ModerationTerm, bool]:
    """Add a deny- or allow-list term for an organisation, or update the category and severity of one already
    there; bumps its list version (reloaded without a restart). Returns the entry and whether it is new.

    Everything is checked here, before it is stored: a bad row would stop every screening of the organisation.
    """
    from moderation.types import CATEGORIES

    if list_ not in ("deny", "allow"):
        raise InvalidInput("list must be 'deny' or 'allow'")
    if severity not in ("block", "review"):
        raise InvalidInput("severity must be 'block' or 'review'")
    if category not in CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")
    term = term.strip()
    if not term:
        raise InvalidInput("empty term")
    if len(term) > TERM_MAX:
        raise InvalidInput(f"term is {len(term)} characters; at most {TERM_MAX}")
    org = get(session, Organization, org_id, lock=True)
    # An allow-list entry switches screening off for a word, a deny-list entry blocks posts: admins only.
    require(session, actor, "policy.manage", org.id)
    entry = session.scalar(
        select(ModerationTerm).where(
            ModerationTerm.organization_id == org.id, ModerationTerm.list == list_, ModerationTerm.term == term
        )
    )
    created = entry is None
    if entry is None:
        entry = ModerationTerm(organization_id=org.id, list=list_, term=term, category=category, severity=severity)
        session.add(entry)
    else:
        entry.category, entry.severity = category, severity
    org.lists_version += 1
    # What is live was screened with the old lists: beat's re-screen is woken now (publisher.services.rescreen)
    after_commit(session, enqueue, Task.RESCREEN_SCAN)
    audit(session, actor, "terms.add" if created else "terms.update", org, list=list_, term=term,
          category=category, severity=severity)  # fmt: skip
    return entry, created


def term_rows(session: Session, actor: Principal, org_id: int) -> list[dict[str, str]]:
    """An organisation's own deny- and allow-list terms (admins of it), by list then term."""
    org = get(session, Organization, org_id)
    require(session, actor, "policy.manage", org.id)
    q = select(ModerationTerm).where(ModerationTerm.organization_id == org.id)
    return [
        {"term": t.term, "list": t.list, "category": t.category, "severity": t.severity}
        for t in session.scalars(q.order_by(ModerationTerm.list, ModerationTerm.term))
    ]


def policy_rows(session: Session, actor: Principal) -> list[dict[str, object]]:
    """Each organisation ``actor`` sets policies for: its review chain as it applies (own or inherited), its
    moderation policy overrides, and its term lists — what an admin's policies page shows."""
    require(session, actor, "policy.manage")
    orgs = visible_orgs(session, actor, "policy.manage")
    q = select(Organization).order_by(Organization.id)
    if orgs is not None:
        q = q.where(Organization.id.in_(orgs))
    return [
        {
            "id": org.id,
            "name": org.name,
            "review_chain": review_chain_of(session, actor, org.id),
            "moderation_policy": dict(org.moderation_policy or {}),
            "lists_version": org.lists_version,
            "terms": term_rows(session, actor, org.id),
        }
        for org in session.scalars(q)
    ]
