"""The review chain (三审): which people approve a post, in which order, and when a chain applies — as data.

An organisation's ``review_chain`` (inherited down the tree: the nearest organisation that has one counts)::

    {"applies": "flagged",                   # or "always": every post goes to review, even on a pass
     "steps": [{"name": "初审", "role": "reviewer", "at": "own"},      # a reviewer of the posting union
               {"name": "复审", "role": "reviewer", "at": "parent"},   # a reviewer of its parent
               {"name": "终审", "role": "admin", "at": "root"}],       # an admin of the top of the tree
     "channels": {"wechat": {"applies": "always", "steps": [...]}}}  # a post to WeChat: this chain instead

``at`` is ``own``, ``parent``, ``root`` or an organisation id; a role held on that organisation *or above it*
qualifies (a province's reviewer may do a city's first step). Without any chain: one step by a reviewer of the
post's organisation, applying to what screening flagged (to every post with ``MATRIX_REQUIRE_REVIEW``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import id_in_range
from core.errors import InvalidInput
from core.settings import get_settings
from publisher.domain.models import ROLES, Account, Organization, Post, PostTarget
from publisher.services.common import ancestors, audit
from publisher.services.people import Principal, find_organization, require

STEPS_MAX = 5


@dataclass(frozen=True)
class Step:
    """One step: its name, the role that approves it, and where that role must be held."""

    name: str
    role: str
    at: str | int = "own"
    deadline_hours: float | None = None


@dataclass(frozen=True)
class Chain:
    """The steps a post's current version must pass, in order, and whether a screening pass skips them."""

    steps: tuple[Step, ...]
    always: bool

    def describe(self) -> str:
        """``初审 → 复审 → 终审``."""
        return " → ".join(step.name for step in self.steps)


def _default() -> Chain:
    return Chain((Step("审核", "reviewer", "own"),), always=get_settings().require_review)


def parse_chain(data: dict[str, Any]) -> Chain:
    """A chain from its JSON form; :class:`InvalidInput` naming what is wrong."""
    if not isinstance(data, dict):
        raise InvalidInput("a review chain is an object with 'steps'")
    applies = data.get("applies", "flagged")
    if applies not in ("flagged", "always"):
        raise InvalidInput("a chain's 'applies' is 'flagged' or 'always'")
    raw = data.get("steps")
    if not isinstance(raw, list) or not 1 <= len(raw) <= STEPS_MAX:
        raise InvalidInput(f"a review chain needs 1 to {STEPS_MAX} steps")
    steps = []
    for n, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise InvalidInput(f"step {n} is not an object")
        role, at = item.get("role", "reviewer"), item.get("at", "own")
        if role not in ROLES:
            raise InvalidInput(f"step {n}: unknown role {role!r}; choose from {', '.join(ROLES)}")
        if at not in ("own", "parent", "root") and not (isinstance(at, int) and id_in_range(at)):
            raise InvalidInput(f"step {n}: 'at' is own, parent, root or an organisation id")
        hours = item.get("deadline_hours")
        if hours is not None and (not isinstance(hours, int | float) or hours <= 0):
            raise InvalidInput(f"step {n}: deadline_hours is a positive number")
        steps.append(Step(str(item.get("name") or f"第{n}审")[:20], role, at, hours))
    return Chain(tuple(steps), always=applies == "always")


def validate_chain(data: dict[str, Any]) -> dict[str, Any]:
    """Check a chain (and its per-channel chains) before it is stored; returns it as given."""
    parse_chain(data)
    channels = data.get("channels") or {}
    if not isinstance(channels, dict):
        raise InvalidInput("'channels' maps a channel kind to its chain")
    for kind, sub in channels.items():
        try:
            parse_chain(sub)
        except InvalidInput as exc:
            raise InvalidInput(f"the {kind} chain: {exc}") from None
    return data


def _chain_source(session: Session, org_id: int) -> Organization | None:
    """The nearest organisation, ``org_id`` itself or above it, that has a review chain of its own."""
    for ancestor in ancestors(session, org_id):
        org = session.get(Organization, ancestor)
        if org is not None and org.review_chain:
            return org
    return None


def chain_for(session: Session, post: Post) -> Chain:
    """The chain that applies to ``post``: its organisation's (or the nearest ancestor's), with a channel's own
    chain where one of the post's accounts is on that channel (the longest such chain wins)."""
    source = _chain_source(session, post.organization_id)
    if source is None:
        return _default()
    data = source.review_chain
    assert data is not None  # noqa: S101 - _chain_source finds only organisations with a chain
    chain = parse_chain(data)
    channels = data.get("channels") or {}
    if channels:
        kinds = set(
            session.scalars(
                select(Account.kind)
                .join(PostTarget, PostTarget.account_id == Account.id)
                .where(PostTarget.post_id == post.id)
            )
        )
        for kind in sorted(kinds & set(channels)):
            sub = parse_chain(channels[kind])
            if len(sub.steps) > len(chain.steps) or (sub.always and not chain.always):
                chain = Chain(sub.steps if len(sub.steps) >= len(chain.steps) else chain.steps,
                              always=chain.always or sub.always)  # fmt: skip
    return chain


def step_org(session: Session, post: Post, step: Step) -> int:
    """The organisation on which (or above which) ``step``'s role must be held for ``post``."""
    chain = ancestors(session, post.organization_id)  # own first, root last
    if step.at == "own":
        return chain[0]
    if step.at == "parent":
        return chain[1] if len(chain) > 1 else chain[0]
    if step.at == "root":
        return chain[-1]
    return int(step.at)


def set_review_chain(session: Session, actor: Principal, org_ref: int | str, data: dict[str, Any] | None) -> None:
    """Set (``None``: clear, so the parent's applies) an organisation's review chain; admins of it only."""
    org = find_organization(session, org_ref)
    require(session, actor, "policy.manage", org.id)
    before = org.review_chain
    org.review_chain = validate_chain(data) if data is not None else None
    audit(session, actor, "org.review_chain", org, before=before, after=org.review_chain)


def review_chain_of(session: Session, actor: Principal, org_ref: int | str) -> dict[str, Any]:
    """An organisation's chain as it applies (its own or inherited) and where it comes from."""
    org = find_organization(session, org_ref)
    require(session, actor, "post.view", org.id)
    source = _chain_source(session, org.id)
    if source is not None:
        return {"organization": org.name, "inherited_from": source.name, "chain": source.review_chain}
    default = _default()
    return {
        "organization": org.name,
        "inherited_from": None,
        "chain": {"applies": "always" if default.always else "flagged",
                  "steps": [{"name": s.name, "role": s.role, "at": s.at} for s in default.steps]},
    }  # fmt: skip
