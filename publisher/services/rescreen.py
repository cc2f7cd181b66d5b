"""What is live is screened again when the rules change: a new lexicon version, an organisation's list change
(its own or an ancestor's) or a new model.

Each screening records what it was screened against (:func:`publisher.services.screening.engine_fingerprint`,
kept on the :class:`Screening` row). Beat's scan (:func:`due_posts`) finds the posts published or partially
published in the last ``MATRIX_RESCREEN_DAYS`` whose fingerprint is not the current one (or that a person asked
to screen again, :func:`request_rescreen`), and the workers screen them again in bounded batches on the
screening queue (:func:`rescreen_posts`; ``workers.rescreen_tasks`` keeps new screenings first).

A re-screen that still passes records the new fingerprint. One that now flags a live post opens a
:class:`LiveFlag`: the post's organisation's reviewers are told, with the new evidence, and may retract it
everywhere in one step (the interfaces run :func:`retraction_for` then the retraction itself, then
:func:`close_flag`) or keep it with a reason (:func:`keep_flag`). Nothing is retracted without a person.
Every outcome is an audit row. Errors are :mod:`core.errors`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

import moderation
from core.broker import Task, enqueue
from core.clock import iso_local, now
from core.db import after_commit, id_in_range, session_scope
from core.errors import Conflict, InvalidInput, NotFound
from core.notify import notify
from core.settings import get_settings
from moderation import Verdict
from publisher.domain import lifecycle
from publisher.domain.lifecycle import PostState
from publisher.domain.models import Delivery, LiveFlag, Organization, Post, PostVersion, Screening
from publisher.services.common import REASON_MAX, ancestors, audit, check_length, get, holders, subtree
from publisher.services.people import SYSTEM, Principal, find_organization, require, visible_orgs
from publisher.services.screening import ScreeningJob, configure_moderation, engine_fingerprint, screening_job
from publisher.services.views import check_page, hit_context

#: The states of a post with copies live on the platforms that a re-screen looks at.
LIVE = (PostState.PUBLISHED.value, PostState.PARTIALLY_PUBLISHED.value)
_HITS_TOLD = 3  # hits quoted in a notification (the review page shows them all)


# ------------------------------------------------------------------------------------------ what is due


def lists_versions(session: Session) -> dict[int, int]:
    """Each organisation's list version as screening counts it: the sum of its own and its ancestors'
    ``lists_version`` (:func:`publisher.services.screening.org_terms`), for every organisation in one query."""
    own = dict(session.execute(select(Organization.id, Organization.lists_version)).all())
    return {org: sum(own.get(o, 0) for o in ancestors(session, org)) for org in own}


def current_fingerprints(session: Session, model_version: str | None = None) -> dict[int, str]:
    """The fingerprint a screening would record now, per organisation (``model_version`` None: the loaded
    model's; the screening workers have it loaded)."""
    if model_version is None:
        configure_moderation()
        model_version = moderation.get_screener().model_version
    model = model_version
    return {org: engine_fingerprint(version, model) for org, version in lists_versions(session).items()}


def _live_in_window(days: int, org_ids: set[int] | None = None):
    """Live posts (joined with their current version's screening) with a copy published in the last ``days``."""
    cutoff = now() - timedelta(days=days)
    recent = select(Delivery.post_id).where(Delivery.published_at >= cutoff).distinct()
    q = (
        select(Post.id, Post.organization_id, Screening.fingerprint, Screening.rescreen_requested_at)
        .join(Screening, Screening.version_id == Post.current_version_id)
        .where(Post.state.in_(LIVE), Post.id.in_(recent))
        .order_by(Post.id.desc())  # the newest first: the most read
    )
    if org_ids is not None:
        q = q.where(Post.organization_id.in_(org_ids))
    return q


def due_posts(
    session: Session, *, limit: int, days: int | None = None, fingerprints: dict[int, str] | None = None
) -> list[int]:
    """Up to ``limit`` live posts (newest first) published in the last ``days`` (default
    ``MATRIX_RESCREEN_DAYS``) whose screening's fingerprint is not the current one of their organisation, or
    that a person asked to screen again. ``fingerprints``: :func:`current_fingerprints`, if read already."""
    fingerprints = fingerprints if fingerprints is not None else current_fingerprints(session)
    due: list[int] = []
    for post_id, org_id, fingerprint, requested in session.execute(
        _live_in_window(days or get_settings().rescreen_days)
    ):
        if requested is not None or fingerprint != fingerprints.get(org_id):
            due.append(post_id)
            if len(due) >= limit:
                break
    return due


def request_rescreen(
    session: Session, actor: Principal, *, days: int | None = None, org: int | str | None = None
) -> int:
    """A person starts a re-screen now (``matrix post rescreen``): every live post published in the last
    ``days`` (default ``MATRIX_RESCREEN_DAYS``) of ``org``'s subtree (None: every organisation ``actor``
    administers) is marked, whatever its fingerprint, and the workers are woken; returns how many were queued.

    Admins only (``policy.manage``): screening what is live again is a change of the rules' reach.
    """
    if days is not None and not 1 <= days <= 3650:
        raise InvalidInput("--days must be between 1 and 3650")
    orgs: set[int] | None
    if org is not None:
        target = find_organization(session, org)
        require(session, actor, "policy.manage", target.id)
        managed = visible_orgs(session, actor, "policy.manage")
        orgs = {o for o in subtree(session, [target.id]) if managed is None or o in managed}
    else:
        require(session, actor, "policy.manage")
        orgs = visible_orgs(session, actor, "policy.manage")
    post_ids = [row[0] for row in session.execute(_live_in_window(days or get_settings().rescreen_days, orgs))]
    t = now()
    if post_ids:
        for screening in session.scalars(
            select(Screening).join(Post, Post.current_version_id == Screening.version_id).where(Post.id.in_(post_ids))
        ):
            screening.rescreen_requested_at = t
        after_commit(session, enqueue, Task.RESCREEN_SCAN)
    audit(session, actor, "posts.rescreen_requested", None, days=days or get_settings().rescreen_days,
          organization=org, posts=len(post_ids))  # fmt: skip
    return len(post_ids)


# ------------------------------------------------------------------------------------------ re-screening


@dataclass(frozen=True)
class _Job:
    post_id: int
    version_id: int
    job: ScreeningJob


def rescreen_posts(post_ids: list[int]) -> dict[str, int]:
    """Screen the live posts ``post_ids`` again with the current rules and record each outcome.

    As :func:`publisher.services.screening.run_screening`: what to screen is read in one short transaction,
    the engine runs with none open, and the outcomes are stored in a second, which checks each post again
    (still live, still at that version). Returns counts: ``passed``, ``flagged``, ``skipped``.
    """
    counts = {"passed": 0, "flagged": 0, "skipped": 0}
    jobs: list[_Job] = []
    with session_scope() as session:
        posts = session.scalars(
            select(Post).options(selectinload(Post.current_version)).where(Post.id.in_(post_ids)).order_by(Post.id)
        ).all()
        for post in posts:
            if post.state not in LIVE or post.current_version is None:
                counts["skipped"] += 1
                continue
            jobs.append(_Job(post.id, post.current_version.id, screening_job(session, post, post.current_version)))
        counts["skipped"] += len(set(post_ids) - {p.id for p in posts})
    results = []
    for j in jobs:
        verdict = j.job.run()
        results.append((j, verdict, j.job.fingerprint(verdict)))
    with session_scope() as session:
        for j, verdict, fingerprint in results:
            counts[record_rescreen(session, j.post_id, j.version_id, verdict, fingerprint)] += 1
    return counts


def record_rescreen(session: Session, post_id: int, version_id: int, verdict: Verdict, fingerprint: str) -> str:
    """Store one re-screen's outcome (``passed`` | ``flagged`` | ``skipped``), in the caller's transaction.

    Passed: the screening's fingerprint is the new one, and an audit row says so. Flagged (review or reject):
    a :class:`LiveFlag` with the new verdict unless one for this fingerprint is open already (an older open
    one is superseded), and the post's organisation's reviewers are told with the evidence. Skipped: the post
    is no longer live at that version (retracted, edited, a duplicate wake-up found it done).
    """
    post = get(session, Post, post_id, lock=True)
    screening = session.scalar(select(Screening).where(Screening.version_id == version_id))
    if post.state not in LIVE or post.current_version_id != version_id or screening is None:
        return "skipped"
    if screening.fingerprint == fingerprint and screening.rescreen_requested_at is None:
        return "skipped"  # another worker re-screened it against these rules meanwhile
    screening.fingerprint, screening.rescreened_at, screening.rescreen_requested_at = fingerprint, now(), None
    data = verdict.to_dict()
    if verdict.decision == "pass":
        audit(session, SYSTEM, "post.rescreened.pass", post, version=version_id, fingerprint=fingerprint)
        return "passed"
    open_flags = session.scalars(select(LiveFlag).where(LiveFlag.post_id == post.id, LiveFlag.state == "open")).all()
    if any(f.fingerprint == fingerprint and f.version_id == version_id for f in open_flags):
        return "skipped"
    for old in open_flags:  # the newest evidence is what reviewers decide on
        old.state, old.decided_at = "superseded", now()
    flag = LiveFlag(post_id=post.id, version_id=version_id, fingerprint=fingerprint, decision=verdict.decision,
                    verdict=data)  # fmt: skip
    session.add(flag)
    session.flush()
    hits = data.get("hits", [])
    evidence = "; ".join(f"{h.get('category')} 「{h.get('text')}」" for h in hits[:_HITS_TOLD]) or "see the post"
    org = post.organization_id
    reviewers = holders(session, ["reviewer"], org) or holders(session, ["admin"], org)  # someone must see it
    notify(session, reviewers or [None], "live_post_flagged",
           f"live post {post.id} is flagged by the new rules ({verdict.decision}): {evidence}; retract it everywhere "
           f"or keep it (flag {flag.id})", post_id=post.id)  # fmt: skip
    found = [{k: h.get(k) for k in ("category", "text", "source")} for h in hits]
    audit(session, SYSTEM, f"post.rescreened.{verdict.decision}", post, version=version_id, flag=flag.id,
          fingerprint=fingerprint, hits=found)  # fmt: skip
    return "flagged"


# ------------------------------------------------------------------------------------------ people decide


def _flag(session: Session, flag_id: int) -> LiveFlag:
    """A flag by id, or :class:`NotFound` naming it (as :func:`get` does, with its name in words)."""
    flag = session.get(LiveFlag, flag_id) if id_in_range(flag_id) else None
    if flag is None:
        raise NotFound(f"live flag {flag_id} not found")
    return flag


def _open_flag(session: Session, actor: Principal, flag_id: int) -> tuple[LiveFlag, Post]:
    """The open flag and its post (locked), for a reviewer (or admin) of the post's organisation."""
    flag = _flag(session, flag_id)
    post = get(session, Post, flag.post_id, lock=True)
    require(session, actor, "post.review", post.organization_id)
    if flag.state != "open":
        raise Conflict(f"flag {flag.id} of post {post.id} is {flag.state}; nothing is left to decide")
    return flag, post


def retraction_for(session: Session, actor: Principal, flag_id: int) -> tuple[int, Principal]:
    """Check that ``actor`` may retract the flagged post in one step and say as whom: the post's id, and
    ``actor`` with the editor's right to retract on that post's organisation only.

    A reviewer holds no retraction right of their own; an open flag on a live post gives them that one, for
    that one post: the interfaces pass the principal returned here to the retraction (which audits it under the
    reviewer's name), then call :func:`close_flag`.
    """
    _flag, post = _open_flag(session, actor, flag_id)
    if post.state not in lifecycle.RETRACTABLE:
        raise Conflict(f"post {post.id} is {post.state}; it cannot be retracted now")
    if actor.system:
        return post.id, actor
    return post.id, dataclasses.replace(actor, grants=(*actor.grants, ("editor", post.organization_id)))


def close_flag(session: Session, actor: Principal, flag_id: int, *, state: str, reason: str = "") -> LiveFlag:
    """Record a person's decision on a flag: ``retracted`` (after the retraction began) or ``kept``."""
    if state not in ("retracted", "kept"):
        raise InvalidInput("a flag is closed as retracted or kept")
    reason = reason.strip()
    check_length("reason", reason, REASON_MAX)
    flag = _flag(session, flag_id)
    post = get(session, Post, flag.post_id, lock=True)
    require(session, actor, "post.review", post.organization_id)
    if flag.state != "open":
        raise Conflict(f"flag {flag.id} of post {post.id} is {flag.state}; nothing is left to decide")
    flag.state, flag.decided_by, flag.decided_at, flag.reason = state, actor.user_id, now(), reason
    audit(session, actor, f"post.live_flag.{state}", post, flag=flag.id, reason=reason)
    return flag


def keep_flag(session: Session, actor: Principal, flag_id: int, *, reason: str) -> LiveFlag:
    """A reviewer keeps the flagged post live (the new rules are wrong about it); a reason is required."""
    if not reason.strip():
        raise InvalidInput("keeping a flagged post live needs a reason (what the new rules got wrong)")
    _open_flag(session, actor, flag_id)
    return close_flag(session, actor, flag_id, state="kept", reason=reason)


def flag_rows(
    session: Session, actor: Principal, *, open_only: bool = True, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The live posts a re-screen flagged that ``actor`` reviews, newest first: the post, the new decision and
    its hits (with where they are in the text), the fingerprint it was screened against, and the flag's state.
    A post retracted since (by any path) needs nothing more and is left out of the open ones."""
    check_page(limit, offset)
    q = (
        select(LiveFlag, Post)
        .join(Post, Post.id == LiveFlag.post_id)
        .order_by(LiveFlag.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if open_only:
        q = q.where(LiveFlag.state == "open", Post.state.not_in(lifecycle.RETRACTION))
    orgs = visible_orgs(session, actor, "post.review")
    if orgs is not None:
        q = q.where(Post.organization_id.in_(orgs))
    rows = []
    for flag, post in session.execute(q).all():
        version = session.get(PostVersion, flag.version_id)
        hits = [
            {**h, "where": hit_context(version, h["start"], h["end"])} if version is not None else h
            for h in flag.verdict.get("hits", [])
        ]
        rows.append({
            "id": flag.id, "post": post.id, "title": version.title if version else None, "post_state": post.state,
            "decision": flag.decision, "hits": hits, "fingerprint": flag.fingerprint, "state": flag.state,
            "reason": flag.reason, "created_at": iso_local(flag.created_at),
        })  # fmt: skip
    return rows
