"""People's decisions on a post's current version, step by step along its review chain (三审), each bound to the
version's content hash: approve a step, reject with a reason, override an automatic reject with a reason.

Rules, checked here for every interface: nobody approves their own post; nobody approves two steps of one
version; the person must hold the step's role on the step's organisation (or above); an edit makes a new
version, and approvals of the old one count for nothing (the chain restarts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import now
from core.db import session_scope
from core.errors import Conflict, Forbidden, InvalidInput
from core.notify import notify
from publisher.domain import lifecycle
from publisher.domain.models import AuditEvent, Organization, Post, PostVersion, ReviewDecision, Screening
from publisher.services.chains import Chain, Step, chain_for, step_org
from publisher.services.common import REASON_MAX, ancestors, audit, check_length, get, holders, notify_owner
from publisher.services.feedback import record as record_feedback
from publisher.services.people import SYSTEM, Principal, holds, require
from publisher.services.schedules import apply_pending_schedule, pending_schedules
from publisher.services.screening import latest_decision


def approvals(session: Session, version: PostVersion) -> list[ReviewDecision]:
    """The approvals (and overrides) of this exact content, in step order."""
    return list(
        session.scalars(
            select(ReviewDecision)
            .where(
                ReviewDecision.version_id == version.id,
                ReviewDecision.content_hash == version.content_hash,
                ReviewDecision.decision.in_(("approve", "override")),
            )
            .order_by(ReviewDecision.step, ReviewDecision.id)
        )
    )


def chain_progress(session: Session, post: Post) -> dict:
    """Where the post's current version is in its chain: each step, who approved it and when, what is next."""
    version = post.current_version
    assert version is not None  # noqa: S101 - a post is made with its first version; for the type checker
    chain = chain_for(session, post)
    done = {d.step: d for d in approvals(session, version)}
    steps = [
        {
            "step": n,
            "name": step.name,
            "role": step.role,
            "organization_id": step_org(session, post, step),
            "approved_by": done[n].reviewer if n in done else None,
            "decision": done[n].decision if n in done else None,
        }
        for n, step in enumerate(chain.steps)
    ]
    # a step is "current" only while the post waits for people (a screening pass skips a "flagged" chain)
    current = len(done) if len(done) < len(chain.steps) and post.state == "needs_review" else None
    return {"chain": chain.describe(), "always": chain.always, "steps": steps, "current_step": current}


def _check_person(session: Session, actor: Principal, post: Post, version: PostVersion, step: Step, n: int) -> None:
    if actor.system:
        return
    if post.author_id is not None and post.author_id == actor.user_id:
        raise Forbidden(f"nobody approves their own post: post {post.id} is yours")
    if any(d.reviewer_id == actor.user_id for d in approvals(session, version)):
        raise Forbidden(f"you approved a step of post {post.id} already; {step.name} needs another person")
    org = step_org(session, post, step)
    if not holds(session, actor, [step.role], org):
        where = session.get(Organization, org)
        raise Forbidden(
            f"{step.name} (step {n + 1}) of post {post.id} takes a {step.role} of "
            f"{where.name if where else org} or above; {actor.describe()} is not one"
        )


def review(
    session: Session,
    actor: Principal,
    post_id: int,
    *,
    approve: bool,
    reason: str = "",
    content_hash: str | None = None,
    category: str | None = None,
) -> ReviewDecision:
    """Approve the current step of the post's chain, or reject the post (a reason is required).

    Reviewers' judgements of screening are kept as feedback (:mod:`publisher.services.feedback`): approving
    what screening flagged marks its hits false positives; rejecting what it passed is missed harm
    (``category``: which, if the reviewer says).

    ``content_hash`` guards against deciding on content that changed since the reviewer read it. The last
    step's approval makes the post approved (scheduled, if a schedule waits); a reject notifies the author.
    """
    reason = reason.strip()
    check_length("reason", reason, REASON_MAX)
    post, version = _reviewable(session, actor, post_id, content_hash)
    if not approve and not reason:
        raise InvalidInput("a rejection needs a reason")
    if approve and post.state != "needs_review":
        raise Conflict(f"post {post.id} is {post.state}; only a post in needs_review can be approved")
    if not approve and post.state not in ("needs_review", "approved", "scheduled"):
        raise Conflict(f"post {post.id} is {post.state}; it cannot be rejected now")
    chain = chain_for(session, post)
    n = min(len(approvals(session, version)), len(chain.steps) - 1)
    step = chain.steps[n]
    if approve:
        _check_person(session, actor, post, version, step, n)
    elif post.author_id is not None and post.author_id == actor.user_id and not actor.system:
        raise Forbidden(f"post {post.id} is yours: withdraw or edit it instead of rejecting it")
    decision = _record(session, actor, post, version, "approve" if approve else "reject", reason, n)
    screened = latest_decision(session, version.id)
    if approve and screened == "review":
        record_feedback(session, actor, post, version, "false_positive", reason=reason)
    elif not approve and screened == "pass":
        record_feedback(session, actor, post, version, "missed_harm", reason=reason, category=category)
    if approve:
        last = n + 1 >= len(chain.steps)
        if last:
            lifecycle.transition("post", post, "approved")
            apply_pending_schedule(session, post)
        audit(session, actor, "post.approve" if last else "post.approve_step", post, reason=reason,
              version=version.number, step=step.name)  # fmt: skip
    else:
        lifecycle.transition("post", post, "rejected")
        for schedule in pending_schedules(session, post.id):
            schedule.state = "cancelled"
        audit(session, actor, "post.reject", post, reason=reason, version=version.number)
        notify_owner(session, post, "post_rejected", f"post {post.id} was rejected by {actor.name}: {reason}")
    return decision


def override(
    session: Session, actor: Principal, post_id: int, *, reason: str, content_hash: str | None = None
) -> ReviewDecision:
    """Override an automatic reject (screening blocked a false positive): the post goes to review, and this
    counts as the chain's first step by ``actor``, recorded as an override with its reason."""
    reason = reason.strip()
    check_length("reason", reason, REASON_MAX)
    if not reason:
        raise InvalidInput("an override needs a reason (what screening got wrong)")
    post, version = _reviewable(session, actor, post_id, content_hash)
    people = session.scalar(select(ReviewDecision.id).where(ReviewDecision.version_id == version.id).limit(1))
    if post.state != "rejected" or latest_decision(session, version.id) != "reject" or people is not None:
        raise Conflict(f"post {post.id} was not rejected by screening; only an automatic reject can be overridden")
    chain = chain_for(session, post)
    _check_person(session, actor, post, version, chain.steps[0], 0)
    decision = _record(session, actor, post, version, "override", reason, 0)
    record_feedback(session, actor, post, version, "false_positive", reason=reason)
    lifecycle.transition("post", post, "needs_review")
    if len(chain.steps) == 1:
        lifecycle.transition("post", post, "approved")
        apply_pending_schedule(session, post)
    audit(session, actor, "post.override", post, reason=reason, version=version.number)
    return decision


def _reviewable(session: Session, actor: Principal, post_id: int, content_hash: str | None) -> tuple[Post, PostVersion]:
    """The post (locked) and its current version, for a decision by ``actor``, a reviewer of its organisation;
    :class:`Conflict` if ``content_hash`` names content the post no longer has."""
    post = get(session, Post, post_id, lock=True)
    require(session, actor, "post.review", post.organization_id)
    version = post.current_version
    assert version is not None  # noqa: S101 - a post is made with its first version; for the type checker
    if content_hash and content_hash != version.content_hash:
        raise Conflict(f"post {post.id} changed since you read it; reload and review version {version.number}")
    return post, version


def _record(
    session: Session, actor: Principal, post: Post, version: PostVersion, kind: str, reason: str, step: int
) -> ReviewDecision:
    decision = ReviewDecision(
        post_id=post.id,
        version_id=version.id,
        content_hash=version.content_hash,
        decision=kind,
        reason=reason,
        reviewer=actor.name,
        reviewer_id=actor.user_id,
        step=step,
    )
    session.add(decision)
    session.flush()
    return decision


__all__ = [
    "Chain",
    "approvals",
    "chain_progress",
    "override",
    "remind_overdue_reviews",
    "review",
    "waiting_step",
    "waiting_steps",
]


@dataclass(frozen=True)
class WaitingStep:
    """The chain step a post waits for: its index, the step, since when it waits, and when it is due."""

    number: int
    step: Step
    since: datetime
    due: datetime | None


def waiting_step(session: Session, post: Post) -> WaitingStep | None:
    """The step of the review chain ``post`` waits for (None when no step is left). A step's clock starts when
    the previous step was approved (the first step's, when screening decided); its deadline is its
    ``deadline_hours`` from then (None: no deadline)."""
    return waiting_steps(session, [post]).get(post.id)


def waiting_steps(session: Session, posts: Sequence[Post]) -> dict[int, WaitingStep | None]:
    """:func:`waiting_step` of many posts (a page of the queue) in three queries, whatever their number: the
    approvals and screenings of every version at once, each organisation's chain once."""
    versions = {p.id: p.current_version for p in posts if p.current_version is not None}
    ids = [v.id for v in versions.values()]
    done: dict[int, list[ReviewDecision]] = {i: [] for i in ids}
    screened: dict[int, datetime] = {}
    if ids:
        decisions = session.scalars(
            select(ReviewDecision)
            .where(ReviewDecision.version_id.in_(ids), ReviewDecision.decision.in_(("approve", "override")))
            .order_by(ReviewDecision.step, ReviewDecision.id)
        )
        hashes = {v.id: v.content_hash for v in versions.values()}
        for d in decisions:
            if d.content_hash == hashes[d.version_id]:  # approvals of this exact content only
                done[d.version_id].append(d)
        rows = session.execute(select(Screening.version_id, Screening.created_at).where(Screening.version_id.in_(ids)))
        for version_id, at in rows:
            screened.setdefault(version_id, at)
    chains: dict[int, Chain] = {}
    out: dict[int, WaitingStep | None] = {}
    for post in posts:
        version = versions.get(post.id)
        if version is None:
            out[post.id] = None
            continue
        if post.organization_id not in chains:
            chains[post.organization_id] = chain_for(session, post)
        chain, approved = chains[post.organization_id], done[version.id]
        if len(approved) >= len(chain.steps):
            out[post.id] = None
            continue
        step = chain.steps[len(approved)]
        since = approved[-1].created_at if approved else screened.get(version.id) or post.updated_at
        due = since + timedelta(hours=step.deadline_hours) if step.deadline_hours is not None else None
        out[post.id] = WaitingStep(len(approved), step, since, due)
    return out


def remind_overdue_reviews(limit: int = 500) -> dict[str, int]:
    """Beat: tell the reviewers of a chain step whose ``deadline_hours`` has passed, once; at twice the
    deadline, escalate to the people holding the step's role (or admin) on the parent organisation, once.

    A step's clock starts when the previous step was approved (the first step's, when screening decided).
    Each reminder is an audit row, so a restart or a second beat never tells anyone twice.
    """
    counts = {"reminded": 0, "escalated": 0}
    with session_scope() as session:
        t = now()
        posts = session.scalars(select(Post).where(Post.state == "needs_review").order_by(Post.id).limit(limit))
        for post in posts.all():
            waiting = waiting_step(session, post)
            if waiting is None or waiting.step.deadline_hours is None:
                continue
            version, n, step = post.current_version, waiting.number, waiting.step
            overdue = t - waiting.since
            deadline = timedelta(hours=step.deadline_hours)
            org = step_org(session, post, step)
            for kind, after, where in (
                ("reminded", deadline, org),
                ("escalated", 2 * deadline, _parent_of(session, org)),
            ):
                if overdue < after or _told(session, post.id, kind, version.id, n):
                    continue
                roles = [step.role] if kind == "reminded" else [step.role, "admin"]
                people = holders(session, roles, where)
                notify(session, people or [None], f"review_{kind}",
                       f"post {post.id}: {step.name} (step {n + 1}) has waited {overdue.total_seconds() / 3600:.0f} h "
                       f"(deadline {step.deadline_hours:g} h)", post_id=post.id)  # fmt: skip
                audit(session, SYSTEM, f"post.review_{kind}", post, version=version.id, step=n, people=people)
                counts[kind] += 1
    return counts


def _screened_at(session: Session, version_id: int) -> datetime | None:
    return session.scalar(select(Screening.created_at).where(Screening.version_id == version_id))


def _parent_of(session: Session, org_id: int) -> int:
    chain = ancestors(session, org_id)
    return chain[1] if len(chain) > 1 else chain[0]


def _told(session: Session, post_id: int, kind: str, version_id: int, step: int) -> bool:
    rows = session.scalars(
        select(AuditEvent.detail).where(
            AuditEvent.object_type == "post",
            AuditEvent.object_id == post_id,
            AuditEvent.action == f"post.review_{kind}",
        )
    )
    return any(d.get("version") == version_id and d.get("step") == step for d in rows)
