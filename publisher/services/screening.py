"""Screening a post with its organisation's lists and the policies of the channels it goes to.

An organisation inherits its ancestors' deny- and allow-lists (a city union screens with the provincial
union's lists too). Policy overrides layer default → organisation → account; a post bound for several
accounts is held to the strictest of their verdicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import moderation
from core.broker import Task, enqueue
from core.clock import now
from core.db import session_scope
from core.metrics import SCREENING_SECONDS
from core.settings import Settings, get_settings
from moderation import Verdict
from publisher.domain import lifecycle
from publisher.domain.models import Account, ModerationTerm, Organization, Post, PostVersion, Screening
from publisher.services.chains import chain_for
from publisher.services.common import ancestors, audit, get, notify_owner
from publisher.services.schedules import apply_pending_schedule

_SEVERITY_ORDER = {"pass": 0, "review": 1, "reject": 2}

# --------------------------------------------------------------------------------- the engine's knobs


def moderation_config(settings: Settings) -> moderation.ModerationConfig:
    """The moderation engine's configuration from the kernel's settings (``MATRIX_MODERATION_*``)."""
    return moderation.ModerationConfig(
        classifier=settings.moderation_classifier,
        model_dir=Path(settings.moderation_model_dir).expanduser() if settings.moderation_model_dir else None,
        base_model=Path(settings.moderation_base_model).expanduser() if settings.moderation_base_model else None,
        cache_dir=settings.model_cache_dir.expanduser(),
    )


_configured_for: Settings | None = None


def configure_moderation(settings: Settings | None = None) -> None:
    """Hand the engine its configuration from the settings (once per settings object; cheap: the engine
    builds its lexicons and loads its model on first use).

    The engine stands alone and reads no settings itself; every process that screens calls this first (the
    worker at start, the API and the CLI on their way in, this module before it screens), and again after the
    settings were reset.
    """
    global _configured_for
    settings = settings or get_settings()
    if _configured_for is not settings:
        moderation.configure(moderation_config(settings))
        _configured_for = settings


def _chain(session: Session, org_id: int) -> list[Organization]:
    """The organisation and its ancestors, nearest first (none for an id that is not there)."""
    found = (session.get(Organization, org) for org in ancestors(session, org_id))
    return [org for org in found if org is not None]


@dataclass(frozen=True)
class OrgTerms:
    """An organisation's deny- and allow-lists with its ancestors', as read from the database (plain values:
    compiled outside the transaction, and only when the compiled cache has no such version)."""

    deny: tuple[tuple[str, str, str], ...]
    allow: tuple[str, ...]
    version: int
    key: str

    def compile(self) -> moderation.OrgLists:
        """The compiled lists (cached by the engine under ``key`` and ``version``)."""
        configure_moderation()
        return moderation.get_screener().compile_org_lists(
            deny=self.deny, allow=self.allow, version=self.version, key=self.key
        )


def org_terms(session: Session, org_id: int) -> OrgTerms | None:
    """The lists that apply to an organisation's posts: its own and its ancestors' (None if all are empty)."""
    chain = _chain(session, org_id)
    version = sum(o.lists_version for o in chain)  # versions only grow, so the sum changes on any edit
    if version == 0:
        return None
    terms = session.scalars(
        select(ModerationTerm)
        .where(ModerationTerm.organization_id.in_([o.id for o in chain]))
        .order_by(ModerationTerm.id)
    )
    deny: list[tuple[str, str, str]] = []
    allow: list[str] = []
    for t in terms:
        if t.list == "deny":
            deny.append((t.term, t.category, t.severity))
        elif t.list == "allow":
            allow.append(t.term)
    return OrgTerms(deny=tuple(deny), allow=tuple(allow), version=version, key=f"org-{org_id}")


def engine_fingerprint(lists_version: int, model_version: str | None = None) -> str:
    """What a screening is screened against, as one string: the built-in lexicon's version, the sum of the
    organisation chain's list versions (:func:`org_terms`) and the model's version (None: the loaded one's,
    which loads the classifier if it is not yet). A live post screened against another is screened again."""
    configure_moderation()
    screener = moderation.get_screener()
    model = screener.model_version if model_version is None else model_version
    return f"lexicon={screener.lexicon.version};lists={lists_version};model={model}"


@dataclass(frozen=True)
class ScreeningJob:
    """Everything one screening needs, read in a short transaction, so the engine runs with none open.

    ``policies`` holds one policy per distinct override among the post's target accounts: the post is held to
    the strictest of their verdicts.
    """

    version_id: int
    text: str
    policies: tuple[moderation.Policy, ...]
    terms: OrgTerms | None

    def run(self) -> Verdict:
        """Screen the text (seconds for a long post; touches no database)."""
        configure_moderation()
        with SCREENING_SECONDS.time():
            lists = self.terms.compile() if self.terms else None
            verdicts = [moderation.screen(self.text, policy=policy, org=lists) for policy in self.policies]
        return max(verdicts, key=lambda v: _SEVERITY_ORDER[v.decision])

    def fingerprint(self, verdict: Verdict) -> str:
        """The fingerprint ``verdict`` was screened against: this job's list version, the model that ran."""
        return engine_fingerprint(self.terms.version if self.terms else 0, verdict.model_version)


def screening_job(session: Session, post: Post, version: PostVersion) -> ScreeningJob:
    """What screening ``version`` of ``post`` takes: its text, the policies of its accounts, its lists."""
    configure_moderation()
    base = moderation.default_policy()  # carries the classifier's own thresholds
    for o in reversed(_chain(session, post.organization_id)):  # ancestors first, the post's own organisation last
        base = base.with_overrides(o.moderation_policy or None)
    accounts = session.scalars(select(Account).where(Account.id.in_([t.account_id for t in post.targets]))).all()
    overrides: dict[str, dict[str, Any]] = {}
    for account in accounts:
        overrides.setdefault(json.dumps(account.moderation_policy or {}, sort_keys=True), account.moderation_policy)
    policies = tuple(base.with_overrides(o or None) for o in overrides.values()) or (base,)
    return ScreeningJob(version.id, version.screened_text(), policies, org_terms(session, post.organization_id))


def prepare_screening(session: Session, version_id: int) -> ScreeningJob | None:
    """The first short transaction of a screening: what to screen, or None when the version has its result
    already (a duplicate wake-up; :func:`record_screening` then only applies it, if that is still due)."""
    version = get(session, PostVersion, version_id)
    if session.scalar(select(Screening.id).where(Screening.version_id == version.id)) is not None:
        return None
    return screening_job(session, get(session, Post, version.post_id), version)


def record_screening(session: Session, version_id: int, verdict: Verdict | None, fingerprint: str = "") -> Screening:
    """The second short transaction: store ``verdict`` for the version and move its post on, if the post is
    still at that version and in ``screening``.

    The post is locked and checked again here, as the screening ran with no transaction open: an edit made
    meanwhile (a newer version, being screened in turn) wins, and this result is stored but changes nothing.
    A version screened twice at once keeps the first result stored. ``verdict`` None applies the stored one.
    ``fingerprint``: what it was screened against (:meth:`ScreeningJob.fingerprint`), kept for re-screening.
    """
    version = get(session, PostVersion, version_id)
    post = get(session, Post, version.post_id, lock=True)
    existing = session.scalar(select(Screening).where(Screening.version_id == version.id))
    if existing is None:
        if verdict is None:  # prepare_screening saw one stored, and screenings are never deleted
            raise RuntimeError(f"version {version.id} has no screening to apply")
        data = verdict.to_dict()
        existing = Screening(
            version_id=version.id,
            decision=data["decision"],
            verdict=data,
            model_version=data.get("model_version", ""),
            lexicon_version=data.get("lexicon_version", ""),
            fingerprint=fingerprint,
        )
        session.add(existing)
        session.flush()
    if post.current_version_id != version.id or post.state != "screening":
        return existing  # stale: a newer version is being screened, or the post was decided already
    outcome = {"pass": "approved", "review": "needs_review", "reject": "rejected"}[existing.decision]
    if outcome == "approved" and chain_for(session, post).always:
        outcome = "needs_review"  # 先审后发: people approve every post (MATRIX_REQUIRE_REVIEW, or the chain says so)
    lifecycle.transition("post", post, outcome)
    audit(session, "moderation", f"post.screened.{existing.decision}", post, version=version.number)
    if outcome == "approved":
        apply_pending_schedule(session, post)
    elif outcome == "rejected":
        hits = existing.verdict.get("hits", [])
        reasons = "; ".join(f"{h.get('category')} 「{h.get('text')}」" for h in hits[:3]) or "see the screening"
        notify_owner(session, post, "post_rejected", f"screening rejected post {post.id}: {reasons}")
    return existing


def screen_version(session: Session, version_id: int) -> Screening:
    """Screen one version and move its post on (if it is still current), all in the caller's transaction.

    For tools and tests that hold a session already; workers use :func:`run_screening`, which keeps the
    engine out of any transaction. Returns the stored screening (of a stale version too).
    """
    job = prepare_screening(session, version_id)
    verdict = job.run() if job else None
    return record_screening(session, version_id, verdict, job.fingerprint(verdict) if job and verdict else "")


def run_screening(version_id: int) -> Screening:
    """Screen one version with no transaction open while the engine runs (seconds for a long post).

    Read what to screen in one short transaction, screen, then store the result and move the post on in a
    second (:func:`record_screening`), so the database's writers (on SQLite: all of them) never wait for the
    engine. Returns the stored screening (detached; the session's objects stay readable after commit).
    """
    with session_scope() as session:
        job = prepare_screening(session, version_id)
    verdict = job.run() if job else None
    fingerprint = job.fingerprint(verdict) if job and verdict else ""
    with session_scope() as session:
        return record_screening(session, version_id, verdict, fingerprint)


def latest_decision(session: Session, version_id: int) -> str | None:
    """Screening's decision on a version (pass / review / reject), or None before it is screened."""
    return session.scalar(select(Screening.decision).where(Screening.version_id == version_id))


def requeue_stale_screenings(older_than_s: float = 60.0, limit: int = 200) -> int:
    """Wake up screening again for posts left in ``screening`` without a result (a lost or failed message).

    Broker messages are only wake-ups: the database says which versions still wait for their screening.
    """
    cutoff = now() - timedelta(seconds=older_than_s)
    with session_scope() as session:
        waiting = session.scalars(
            select(Post.current_version_id)
            .outerjoin(Screening, Screening.version_id == Post.current_version_id)
            .where(Post.state == "screening", Post.updated_at < cutoff, Screening.id.is_(None))
            .limit(limit)
        ).all()
    for version_id in waiting:
        enqueue(Task.SCREEN_VERSION, version_id)
    return len(waiting)
