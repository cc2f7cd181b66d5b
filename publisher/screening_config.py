"""Screening a post with its organisation's lists and the policies of the channels it goes to.

An organisation inherits its ancestors' deny- and allow-lists (a city union screens with the provincial
union's lists too). Policy overrides layer default → organisation → account; a post bound for several
accounts is held to the strictest of their verdicts.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import moderation
from moderation import Verdict
from publisher.models import Account, ModerationTerm, Organization, Post

_SEVERITY_ORDER = {"pass": 0, "review": 1, "reject": 2}


def _chain(session: Session, org_id: int) -> list[Organization]:
    chain: list[Organization] = []
    seen: set[int] = set()
    current = session.get(Organization, org_id)
    while current is not None and current.id not in seen:  # guard against a cycle made by hand
        chain.append(current)
        seen.add(current.id)
        current = session.get(Organization, current.parent_id) if current.parent_id else None
    return chain


def org_lists(session: Session, org_id: int) -> moderation.OrgLists | None:
    """The compiled lists of an organisation and its ancestors (cached by version; None if empty)."""
    chain = _chain(session, org_id)
    version = sum(o.lists_version for o in chain)  # versions only grow, so the sum changes on any edit
    if version == 0:
        return None

    def terms(list_: str):
        return session.scalars(
            select(ModerationTerm).where(
                ModerationTerm.organization_id.in_([o.id for o in chain]), ModerationTerm.list == list_
            )
        ).all()

    return moderation.get_screener().compile_org_lists(
        deny=((t.term, t.category, t.severity) for t in terms("deny")),
        allow=(t.term for t in terms("allow")),
        version=version,
        key=f"org-{org_id}",
    )


def screen_post(session: Session, post: Post, text: str) -> Verdict:
    """The strictest verdict over the post's target accounts' policies."""
    org = session.get(Organization, post.organization_id)
    base = moderation.default_policy()  # carries the classifier's own thresholds
    for o in reversed(_chain(session, org.id)):  # ancestors first, the post's own organisation last
        base = base.with_overrides(o.moderation_policy or None)
    accounts = session.scalars(select(Account).where(Account.id.in_([t.account_id for t in post.targets]))).all()
    overrides: dict[str, dict[str, Any]] = {}
    for account in accounts:
        overrides.setdefault(json.dumps(account.moderation_policy or {}, sort_keys=True), account.moderation_policy)
    lists = org_lists(session, org.id)
    verdicts = [moderation.screen(text, policy=base.with_overrides(o or None), org=lists) for o in overrides.values()]
    if not verdicts:
        verdicts = [moderation.screen(text, policy=base, org=lists)]
    return max(verdicts, key=lambda v: _SEVERITY_ORDER[v.decision])
