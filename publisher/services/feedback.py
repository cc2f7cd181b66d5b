"""Reviewers' feedback on screening, kept as labelled examples the classifier can be trained on, and the
allow-list proposals it makes: a term reviewers overrode :data:`PROPOSAL_THRESHOLD` times or more in one
organisation is proposed, and an admin accepts it (it joins the allow-list) or dismisses it.

The export is JSONL that ``python -m moderation.train --feedback FILE`` reads
(:func:`moderation.dataset.load_feedback`): one object per line with ``text``, ``labels`` (0/1 per model
category; a false positive is all 0, a missed harm 1 for the category the reviewer named), ``kind``,
``hits`` and ``source``. A missed harm without a category is exported with ``labels: null`` (the trainer
skips it and says how many): a reviewer's reject says *that* the text is harmful, not which harm.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import iso_local
from core.errors import Conflict, InvalidInput
from publisher.domain.models import ModerationTerm, Post, PostVersion, ReviewFeedback, Screening, TermProposal
from publisher.services.common import audit
from publisher.services.people import Principal, find_organization, require, visible_orgs
from publisher.services.terms import add_moderation_term

PROPOSAL_THRESHOLD = 3
FEEDBACK_KINDS = ("false_positive", "missed_harm")


def record(
    session: Session,
    actor: Principal,
    post: Post,
    version: PostVersion,
    kind: str,
    *,
    reason: str = "",
    category: str | None = None,
) -> ReviewFeedback | None:
    """Keep one reviewer judgement of this version's screening (once per version and kind)."""
    from moderation.dataset import MODEL_CATEGORIES

    if category is not None and category not in MODEL_CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}; choose from {', '.join(MODEL_CATEGORIES)}")
    seen = session.scalar(
        select(ReviewFeedback.id).where(ReviewFeedback.version_id == version.id, ReviewFeedback.kind == kind)
    )
    if seen is not None:
        return None
    screening = session.scalar(select(Screening).where(Screening.version_id == version.id))
    hits = (screening.verdict or {}).get("hits", []) if screening else []
    row = ReviewFeedback(
        organization_id=post.organization_id,
        post_id=post.id,
        version_id=version.id,
        kind=kind,
        text=version.screened_text(),
        hits={"hits": hits},
        category=category,
        reviewer_id=actor.user_id,
        reason=reason,
    )
    session.add(row)
    return row


def export_lines(session: Session, actor: Principal) -> Iterator[str]:
    """The feedback ``actor`` may see (admins: their subtrees), as JSONL lines for ``moderation.train``."""
    from moderation.dataset import MODEL_CATEGORIES

    require(session, actor, "policy.manage")
    orgs = visible_orgs(session, actor, "policy.manage")
    query = select(ReviewFeedback).order_by(ReviewFeedback.id)
    if orgs is not None:
        query = query.where(ReviewFeedback.organization_id.in_(orgs))
    for row in session.scalars(query):
        if row.kind == "false_positive":
            labels: dict[str, int] | None = dict.fromkeys(MODEL_CATEGORIES, 0)
        elif row.category:
            labels = {c: int(c == row.category) for c in MODEL_CATEGORIES}
        else:
            labels = None
        yield json.dumps(
            {
                "text": row.text,
                "labels": labels,
                "kind": row.kind,
                "hits": [{"term": h.get("term"), "category": h.get("category")} for h in row.hits.get("hits", [])],
                "reason": row.reason,
                "source": f"reviewer-feedback:{row.organization_id}",
                "created_at": iso_local(row.created_at),
            },
            ensure_ascii=False,
        )


def proposals(session: Session, actor: Principal, *, threshold: int = PROPOSAL_THRESHOLD) -> list[dict[str, Any]]:
    """Terms reviewers overrode at least ``threshold`` times per organisation, not yet on its allow-list and not
    decided on: what an admin may add to the allow-list."""
    require(session, actor, "policy.manage")
    orgs = visible_orgs(session, actor, "policy.manage")
    counts: Counter[tuple[int, str]] = Counter()
    query = select(ReviewFeedback).where(ReviewFeedback.kind == "false_positive")
    if orgs is not None:
        query = query.where(ReviewFeedback.organization_id.in_(orgs))
    for row in session.scalars(query):
        for term in {h.get("term") for h in row.hits.get("hits", []) if h.get("term") and h.get("list") != "allow"}:
            counts[(row.organization_id, str(term))] += 1
    decided = set(session.execute(select(TermProposal.organization_id, TermProposal.term)).all())
    allowed = set(
        session.execute(
            select(ModerationTerm.organization_id, ModerationTerm.term).where(ModerationTerm.list == "allow")
        ).all()
    )
    return [
        {"organization_id": org, "term": term, "overrides": n}
        for (org, term), n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if n >= threshold and (org, term) not in decided and (org, term) not in allowed
    ]


def decide_proposal(session: Session, actor: Principal, org_ref: int | str, term: str, *, accept: bool) -> None:
    """Accept (the term joins the organisation's allow-list) or dismiss (it is not proposed again) a proposal."""
    org = find_organization(session, org_ref)
    require(session, actor, "policy.manage", org.id)
    if not any(p["organization_id"] == org.id and p["term"] == term for p in proposals(session, actor)):
        raise Conflict(f"{term!r} is not proposed for {org.name}")
    session.add(TermProposal(organization_id=org.id, term=term, state="accepted" if accept else "dismissed",
                             decided_by=actor.user_id))  # fmt: skip
    if accept:
        add_moderation_term(session, actor, org.id, term, list_="allow")
    audit(session, actor, "terms.proposal_accepted" if accept else "terms.proposal_dismissed", org, term=term)
