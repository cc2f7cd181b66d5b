"""Domain services: what editors, reviewers and admins do. Each takes a Session and commits nothing itself.

The caller (CLI command, API route, Celery task) owns the transaction; wake-ups for workers go out after
it commits (:mod:`publisher.wakeups`). Errors are :mod:`publisher.errors`, one line each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from channels.base import channel_kinds, get_channel_class
from publisher import lifecycle
from publisher.config import get_settings
from publisher.crypto import encrypt_credentials
from publisher.db import session_scope
from publisher.errors import Conflict, InvalidInput, NotFound
from publisher.models import (
    Account,
    AuditEvent,
    Delivery,
    ModerationTerm,
    Organization,
    Post,
    PostTarget,
    PostVersion,
    ReviewDecision,
    Schedule,
    Screening,
    User,
)
from publisher.timeutil import iso_local, now
from publisher.wakeups import after_commit, enqueue

TITLE_MAX = 200
TERM_MAX = 200  # moderation_terms.term is VARCHAR(200)


# ------------------------------------------------------------------------------------------ audit


def audit(session: Session, actor: str, action: str, obj: Any, **detail: Any) -> None:
    """Append an audit event (who did what to which object)."""
    session.add(
        AuditEvent(
            actor=actor or "system",
            action=action,
            object_type=type(obj).__name__.lower(),
            object_id=getattr(obj, "id", None),
            detail=detail,
        )
    )


def notify_owner(session: Session, post: Post, kind: str, message: str) -> None:
    """Tell the post's author (or, without one, every admin) about something that needs them."""
    from publisher.models import Notification

    if post.author_id is not None:
        recipients = [post.author_id]
    else:
        recipients = list(session.scalars(select(User.id).where(User.role == "admin")).all()) or [None]
    for user_id in recipients:
        session.add(Notification(user_id=user_id, post_id=post.id, kind=kind, message=message))


def get(session: Session, model: type, obj_id: int, *, lock: bool = False):
    """Load one row by id or raise :class:`NotFound` naming it."""
    if lock:
        obj = session.execute(select(model).where(model.id == obj_id).with_for_update()).scalar_one_or_none()
    else:
        obj = session.get(model, obj_id)
    if obj is None:
        raise NotFound(f"{model.__name__.lower()} {obj_id} not found")
    return obj


# ---------------------------------------------------------------------------------- organisations


def ensure_organization(session: Session, name: str, parent: Organization | None = None) -> Organization:
    """Get or create an organisation by name."""
    org = session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        org = Organization(name=name, parent_id=parent.id if parent else None)
        session.add(org)
        session.flush()
    return org


def ensure_user(session: Session, name: str, role: str, org: Organization | None = None) -> User:
    """Get or create a user by name."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name, role=role, organization_id=org.id if org else None)
        session.add(user)
        session.flush()
    return user


def add_moderation_term(
    session: Session, org_id: int, term: str, *, list_: str, category: str = "custom", severity: str = "review"
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
    return entry, created


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
        enqueue("matrix.screen_version", version_id)
    return len(waiting)


# --------------------------------------------------------------------------------------- accounts


def add_account(
    session: Session,
    *,
    kind: str,
    name: str,
    credentials: dict[str, Any],
    config: dict[str, Any] | None = None,
    organization: str | int | None = None,
    actor: str = "admin",
) -> Account:
    """Register a platform account; credentials are encrypted at rest (see :func:`check_new_account`)."""
    _require_kind(kind)
    name = name.strip()
    if not name:
        raise InvalidInput("account name is empty")
    if session.scalar(select(Account).where(Account.kind == kind, Account.name == name)):
        raise Conflict(f"a {kind} account named {name!r} exists already")
    if isinstance(organization, int):
        org = get(session, Organization, organization)
    else:
        org = ensure_organization(session, organization or "default")
    account = Account(
        organization_id=org.id,
        kind=kind,
        name=name,
        credentials_enc=encrypt_credentials(credentials),
        config=dict(config or {}),
    )
    session.add(account)
    session.flush()
    audit(session, actor, "account.add", account, kind=kind, name=name)
    return account


def _require_kind(kind: str) -> None:
    if kind not in channel_kinds():
        raise InvalidInput(f"unknown channel kind {kind!r}; known: {', '.join(channel_kinds())}")


def find_account(session: Session, ref: str | int) -> Account:
    """An account by id or by name (names are unique per kind; an ambiguous name is an error)."""
    if isinstance(ref, int) or str(ref).isdigit():
        return get(session, Account, int(ref))
    matches = session.scalars(select(Account).where(Account.name == ref)).all()
    if not matches:
        raise NotFound(f"account {ref!r} not found")
    if len(matches) > 1:
        raise InvalidInput(f"account name {ref!r} is ambiguous; use its id")
    return matches[0]


# Asking the platform happens before the caller's own transaction: a platform call inside it would hold the
# database (on SQLite, its write lock) for the length of a network call, and the token cache that some
# adapters use needs the database too.
def check_new_account(kind: str, name: str, credentials: dict[str, Any], config: dict[str, Any] | None) -> None:
    """Ask the platform whether a new account's credentials work; :class:`InvalidInput` with its reason if not."""
    from publisher.delivery import check_credentials

    _require_kind(kind)
    check_credentials(kind, name.strip(), credentials, dict(config or {}))


def check_new_credentials(account_id: int, credentials: dict[str, Any]) -> None:
    """Ask the platform whether new credentials for an existing account work (before re-authorising it)."""
    from publisher.delivery import check_credentials

    with session_scope() as session:
        account = get(session, Account, account_id)
        kind, name, config = account.kind, account.name, dict(account.config)
    check_credentials(kind, name, credentials, config, account_id=account_id)


def reauthorize_account(session: Session, account_id: int, credentials: dict[str, Any], actor: str) -> Account:
    """Store new credentials, reactivate the account and release the deliveries that waited for it."""
    account = get(session, Account, account_id, lock=True)
    account.credentials_enc = encrypt_credentials(credentials)
    account.status, account.status_reason, account.paused_until = "active", None, None
    waiting = session.scalars(
        select(Delivery).where(Delivery.account_id == account.id, Delivery.state == "needs_reauth")
    ).all()
    for delivery in waiting:
        lifecycle.transition("delivery", delivery, "pending")
        delivery.next_attempt_at = now()
    # A post whose only unsettled deliveries waited for this account was settled as failed (or partially
    # published); with them released it is publishing again, so their outcome can still settle it.
    for post_id in sorted({d.post_id for d in waiting}):
        post = get(session, Post, post_id, lock=True)
        if post.state in ("failed", "partially_published"):
            lifecycle.transition("post", post, "publishing")
    audit(session, actor, "account.reauthorize", account, released=len(waiting))
    if waiting:
        after_commit(session, enqueue, "matrix.dispatch_due")
    return account


# ------------------------------------------------------------------------------------------ posts


def _validate_content(title: str, body: str) -> tuple[str, str]:
    title, body = (title or "").strip(), (body or "").strip()
    if not title:
        raise InvalidInput("title is empty")
    if len(title) > TITLE_MAX:
        raise InvalidInput(f"title is {len(title)} characters; at most {TITLE_MAX}")
    if not body:
        raise InvalidInput("body is empty")
    limit = get_settings().body_max_chars
    if len(body) > limit:
        raise InvalidInput(f"body is {len(body)} characters; at most {limit}")
    return title, body


def create_post(
    session: Session,
    *,
    title: str,
    body: str,
    accounts: Sequence[str | int],
    summary: str = "",
    cover_url: str | None = None,
    author: str = "editor",
    submit: bool = True,
) -> Post:
    """Create a post with its first version and its target accounts; by default submit it for screening."""
    title, body = _validate_content(title, body)
    if not accounts:
        raise InvalidInput("no target accounts given")
    targets = [find_account(session, ref) for ref in accounts]
    if len({a.id for a in targets}) != len(targets):
        raise InvalidInput("an account is named twice")
    for account in targets:
        if account.status == "disabled":
            raise InvalidInput(f"account {account.id} ({account.name}) is disabled")
    user = ensure_user(session, author, "editor")
    post = Post(organization_id=targets[0].organization_id, author_id=user.id, state="draft")
    session.add(post)
    session.flush()
    post.targets = [PostTarget(post_id=post.id, account_id=a.id) for a in targets]
    version = _new_version(session, post, title, body, summary, cover_url, user)
    audit(session, author, "post.create", post, version=version.number, accounts=[a.id for a in targets])
    if submit:
        submit_post(session, post.id, actor=author)
    return post


def _new_version(
    session: Session, post: Post, title: str, body: str, summary: str, cover_url: str | None, user: User | None
) -> PostVersion:
    number = (session.scalar(select(func.max(PostVersion.number)).where(PostVersion.post_id == post.id)) or 0) + 1
    version = PostVersion(
        post_id=post.id,
        number=number,
        title=title,
        body=body,
        summary=(summary or "").strip(),
        cover_url=cover_url or None,
        content_hash=PostVersion.hash_content(title, body, (summary or "").strip(), cover_url),
        created_by=user.id if user else None,
    )
    session.add(version)
    session.flush()
    post.current_version_id = version.id
    post.current_version = version
    return version


def edit_post(
    session: Session,
    post_id: int,
    *,
    title: str | None = None,
    body: str | None = None,
    summary: str | None = None,
    cover_url: str | None = None,
    actor: str = "editor",
) -> Post:
    """Make a new version. Past draft, the post goes back to screening: no approval carries to new content."""
    post = get(session, Post, post_id, lock=True)
    if post.state not in lifecycle.EDITABLE:
        # Published content is not changed in place on the platforms: retract it and post a corrected one.
        hint = "" if post.state == "retracted" else " (retract it and create a corrected post)"
        raise Conflict(f"post {post.id} is {post.state}; it can no longer be edited{hint}")
    old = post.current_version
    assert old is not None
    new_title, new_body = _validate_content(
        title if title is not None else old.title, body if body is not None else old.body
    )
    new_summary = summary if summary is not None else old.summary
    new_cover = cover_url if cover_url is not None else old.cover_url
    if PostVersion.hash_content(new_title, new_body, new_summary, new_cover) == old.content_hash:
        return post  # nothing changed: keep the version and its approval
    version = _new_version(
        session, post, new_title, new_body, new_summary, new_cover, ensure_user(session, actor, "editor")
    )
    audit(session, actor, "post.edit", post, version=version.number, previous_state=post.state)
    if post.state != "draft":
        lifecycle.transition("post", post, "screening")
        after_commit(session, enqueue, "matrix.screen_version", version.id)
    return post


def submit_post(session: Session, post_id: int, actor: str = "editor") -> Post:
    """Send the current version to screening (a worker screens it)."""
    post = get(session, Post, post_id)
    lifecycle.transition("post", post, "screening")
    audit(session, actor, "post.submit", post)
    after_commit(session, enqueue, "matrix.screen_version", post.current_version_id)
    return post


def _screen_parts(version: PostVersion) -> list[tuple[str, str]]:
    return [(field, text) for field, text in (("title", version.title), ("summary", version.summary),
                                                ("body", version.body)) if text]  # fmt: skip


def _screen_text(version: PostVersion) -> str:
    return "\n".join(text for _field, text in _screen_parts(version))


def hit_context(version: PostVersion, start: int, end: int, width: int = 12) -> dict[str, Any]:
    """Where a screening hit is, for a reviewer: the field (title, summary, body), the offsets inside it, and
    up to ``width`` characters either side (hit offsets index the screened text, the fields joined by
    line breaks)."""
    offset = 0
    for field, text in _screen_parts(version):
        if start < offset + len(text) + 1:
            a, b = start - offset, min(end - offset, len(text))
            return {"field": field, "start": a, "end": b, "before": text[max(0, a - width) : a],
                    "after": text[b : b + width]}  # fmt: skip
        offset += len(text) + 1
    return {"field": "body", "start": start, "end": end, "before": "", "after": ""}


def screen_version(session: Session, version_id: int) -> Screening | None:
    """Screen one version with the moderation engine and move its post on (if it is still current).

    Returns the stored screening, or None if the post moved on to a newer version meanwhile.
    """
    from publisher.screening_config import screen_post

    version = get(session, PostVersion, version_id)
    post = get(session, Post, version.post_id, lock=True)
    existing = session.scalar(select(Screening).where(Screening.version_id == version.id))
    if existing is None:
        verdict = screen_post(session, post, _screen_text(version))
        data = verdict.to_dict()
        existing = Screening(
            version_id=version.id,
            decision=data["decision"],
            verdict=data,
            model_version=data.get("model_version", ""),
            lexicon_version=data.get("lexicon_version", ""),
        )
        session.add(existing)
        session.flush()
    if post.current_version_id != version.id or post.state != "screening":
        return existing  # stale: a newer version is being screened, or the post was decided already
    outcome = {"pass": "approved", "review": "needs_review", "reject": "rejected"}[existing.decision]
    if outcome == "approved" and get_settings().require_review:
        outcome = "needs_review"  # 先审后发: a person approves every post
    lifecycle.transition("post", post, outcome)
    audit(session, "moderation", f"post.screened.{existing.decision}", post, version=version.number)
    if outcome == "approved":
        _apply_pending_schedule(session, post)
    return existing


def review(
    session: Session,
    post_id: int,
    *,
    approve: bool,
    reason: str = "",
    reviewer: str = "reviewer",
    content_hash: str | None = None,
) -> ReviewDecision:
    """A reviewer's decision on the current version; ``content_hash`` guards against approving stale content."""
    post = get(session, Post, post_id, lock=True)
    version = post.current_version
    assert version is not None
    if content_hash and content_hash != version.content_hash:
        raise Conflict(f"post {post.id} changed since you read it; reload and review version {version.number}")
    if not approve and not reason.strip():
        raise InvalidInput("a rejection needs a reason")
    if approve and post.state != "needs_review":
        raise Conflict(f"post {post.id} is {post.state}; only a post in needs_review can be approved")
    if not approve and post.state not in ("needs_review", "approved", "scheduled"):
        raise Conflict(f"post {post.id} is {post.state}; it cannot be rejected now")
    decision = ReviewDecision(
        post_id=post.id,
        version_id=version.id,
        content_hash=version.content_hash,
        decision="approve" if approve else "reject",
        reason=reason.strip(),
        reviewer=reviewer,
    )
    session.add(decision)
    lifecycle.transition("post", post, "approved" if approve else "rejected")
    if not approve:
        for schedule in _pending_schedules(session, post.id):
            schedule.state = "cancelled"
    audit(session, reviewer, "post.approve" if approve else "post.reject", post, reason=reason, version=version.number)
    if approve:
        _apply_pending_schedule(session, post)
    return decision


# --------------------------------------------------------------------------------------- schedule


def _pending_schedules(session: Session, post_id: int) -> list[Schedule]:
    return list(session.scalars(select(Schedule).where(Schedule.post_id == post_id, Schedule.state == "pending")).all())


def _apply_pending_schedule(session: Session, post: Post) -> None:
    if post.state == "approved" and _pending_schedules(session, post.id):
        lifecycle.transition("post", post, "scheduled")
        after_commit(session, enqueue, "matrix.dispatch_due")


def schedule_post(session: Session, post_id: int, at: datetime, actor: str = "editor") -> Schedule:
    """Schedule the post for ``at`` (aware). It publishes then if its current version is approved by then."""
    if at.tzinfo is None:
        raise InvalidInput("time without a zone")
    post = get(session, Post, post_id, lock=True)
    if post.state in ("draft",):
        raise Conflict(f"post {post.id} is a draft; submit it for screening first")
    if post.state not in ("screening", "needs_review", "approved", "scheduled"):
        raise Conflict(f"post {post.id} is {post.state}; it cannot be scheduled")
    for old in _pending_schedules(session, post.id):
        old.state = "cancelled"  # one pending schedule per post: a new time replaces the old one
    schedule = Schedule(post_id=post.id, due_at=at)
    session.add(schedule)
    session.flush()
    audit(session, actor, "post.schedule", post, due_at=at.isoformat())
    if post.state == "approved":
        lifecycle.transition("post", post, "scheduled")
    if at <= now():
        after_commit(session, enqueue, "matrix.dispatch_due")
    return schedule


def retry_post(session: Session, post_id: int, actor: str = "editor") -> list[Delivery]:
    """Retry only the deliveries that failed; the published ones are left alone."""
    post = get(session, Post, post_id, lock=True)
    failed = [d for d in deliveries_of(session, post.id) if d.state == "failed"]
    if not failed:
        raise Conflict(f"post {post.id} has no failed delivery to retry")
    for delivery in failed:
        lifecycle.transition("delivery", delivery, "pending")
        delivery.next_attempt_at, delivery.last_error = now(), None
    if post.state != "publishing":
        lifecycle.transition("post", post, "publishing")
    audit(session, actor, "post.retry", post, deliveries=[d.id for d in failed])
    after_commit(session, enqueue, "matrix.dispatch_due")
    return failed


def deliveries_of(session: Session, post_id: int) -> list[Delivery]:
    """The post's deliveries, newest schedule last."""
    return list(session.scalars(select(Delivery).where(Delivery.post_id == post_id).order_by(Delivery.id)).all())


def latest_screening(session: Session, version_id: int | None) -> Screening | None:
    """The screening of a version, if done."""
    if version_id is None:
        return None
    return session.scalar(select(Screening).where(Screening.version_id == version_id))


def _with_context(verdict: dict[str, Any], version: PostVersion) -> dict[str, Any]:
    hits = [{**h, "where": hit_context(version, h["start"], h["end"])} for h in verdict.get("hits", [])]
    return {**verdict, "hits": hits}


def post_summary(session: Session, post: Post) -> dict[str, Any]:
    """A JSON-able view of a post with its deliveries (for `post show` and the API)."""
    version = post.current_version
    screening = latest_screening(session, post.current_version_id)
    schedule = session.scalar(select(Schedule).where(Schedule.post_id == post.id).order_by(Schedule.id.desc()).limit(1))
    return {
        "id": post.id,
        "state": post.state,
        "version": version.number if version else None,
        "content_hash": version.content_hash if version else None,
        "title": version.title if version else None,
        "summary": version.summary if version else None,
        "targets": [t.account_id for t in post.targets],
        "screening": _with_context(screening.verdict, version) if screening and version else None,
        "schedule": ({"due_at": iso_local(schedule.due_at), "state": schedule.state} if schedule else None),
        "deliveries": [delivery_summary(d) for d in deliveries_of(session, post.id)],
    }


def delivery_summary(d: Delivery) -> dict[str, Any]:
    """A JSON-able view of one delivery."""
    return {
        "id": d.id,
        "account_id": d.account_id,
        "account": d.account.name,
        "kind": d.account.kind,
        "state": d.state,
        "attempts": d.attempts,
        "remote_id": d.remote_id,
        "remote_url": d.remote_url,
        "last_error": d.last_error,
        "next_attempt_at": iso_local(d.next_attempt_at),
        "published_at": iso_local(d.published_at),
    }


def accounts_needing_link(kinds: Iterable[str]) -> set[str]:
    """Channel kinds whose deliveries wait for the website copy's URL."""
    return {k for k in kinds if get_channel_class(k).needs_website_link}
