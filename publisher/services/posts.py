"""Posts and their immutable versions: create, edit (a new version), submit to screening."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from channels.base import image_bytes
from channels.errors import ChannelError
from channels.media import sniff_image
from core.broker import Task, enqueue
from core.db import after_commit
from core.errors import Conflict, InvalidInput
from core.http import guarded_client, safe_url
from core.settings import get_settings
from publisher.domain import lifecycle
from publisher.domain.models import Account, Post, PostTarget, PostVersion, User
from publisher.services.accounts import find_account
from publisher.services.common import URL_MAX, audit, check_length, get
from publisher.services.media import COVER_MAX_BYTES, check_media_cover, is_media_ref
from publisher.services.people import Principal, require

TITLE_MAX = 200
SUMMARY_MAX = 1000  # every channel cuts a summary much shorter (120-300 characters); this only bounds the input
TARGETS_MAX = 5000  # accounts one post goes to: each is looked up, so the list is bounded


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


def _validate_variants(variants: dict[str, Any] | None, kinds: set[str]) -> dict[str, dict[str, str]]:
    """An editor's per-platform texts, cleaned: ``{kind: {"title"?, "body"?}}`` for kinds the post goes to;
    empty texts are dropped (the platform gets the common text)."""
    out: dict[str, dict[str, str]] = {}
    for kind, variant in (variants or {}).items():
        if not isinstance(variant, dict):
            raise InvalidInput(f"variant for {kind!r} must be an object with 'title' and/or 'body'")
        unknown = set(variant) - {"title", "body"}
        if unknown:
            raise InvalidInput(f"variant for {kind!r} has unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        if kind not in kinds:
            where = ", ".join(sorted(kinds)) or "no platform"
            raise InvalidInput(f"variant for {kind!r}, but the post goes to {where}")
        clean = {k: str(v or "").strip() for k, v in variant.items()}
        check_length(f"{kind} title", clean.get("title", ""), TITLE_MAX)
        check_length(f"{kind} text", clean.get("body", ""), get_settings().body_max_chars)
        clean = {k: v for k, v in clean.items() if v}
        if clean:
            out[kind] = clean
    return out


def _validate_extras(summary: str | None, cover_url: str | None) -> None:
    check_length("summary", (summary or "").strip(), SUMMARY_MAX)
    check_length("cover URL", cover_url or "", URL_MAX)


def check_cover(url: str | None) -> None:
    """Fetch a cover URL now and check it is an image, so a wrong address is found when the post is written,
    not at delivery. Through the guarded client (public addresses or the allow-list only); called before the
    caller's transaction touches the database, so no lock is held over the network call. An uploaded image
    (``media:<id>``) was checked when it was uploaded: :func:`check_media_cover` checks who may use it."""
    if not url or is_media_ref(url):
        return
    try:
        with guarded_client(timeout=get_settings().http_timeout_s) as client:
            data = image_bytes(client, url, what="cover", max_bytes=COVER_MAX_BYTES, deadline_s=30)
    except ChannelError as exc:  # refused, unreachable or not there: the editor fixes the address
        raise InvalidInput(str(exc)) from None
    if sniff_image(data) is None:
        raise InvalidInput(f"cover {safe_url(url)} is not a JPEG, PNG, GIF, WebP or BMP image")


def create_post(
    session: Session,
    actor: Principal,
    *,
    title: str,
    body: str,
    accounts: Sequence[str | int],
    summary: str = "",
    cover_url: str | None = None,
    variants: dict[str, Any] | None = None,
    submit: bool = True,
) -> Post:
    """Create a post by ``actor`` (an editor of every target account's organisation) with its first version and
    its target accounts; by default submit it for screening. ``variants`` gives a platform its own title or
    text (``{"weibo": {"body": ...}}``)."""
    title, body = _validate_content(title, body)
    _validate_extras(summary, cover_url)
    check_cover(cover_url)
    if not accounts:
        raise InvalidInput("no target accounts given")
    if len(accounts) > TARGETS_MAX:
        raise InvalidInput(f"{len(accounts)} target accounts; at most {TARGETS_MAX}")
    targets = [find_account(session, ref) for ref in accounts]
    if len({a.id for a in targets}) != len(targets):
        raise InvalidInput("an account is named twice")
    for account in targets:
        if account.status == "disabled":
            raise InvalidInput(f"account {account.id} ({account.name}) is disabled")
    clean_variants = _validate_variants(variants, {a.kind for a in targets})
    for org in sorted({a.organization_id for a in targets}):
        require(session, actor, "post.write", org)
    if is_media_ref(cover_url):
        check_media_cover(session, actor, cover_url, targets[0].organization_id)
    user = session.get(User, actor.user_id) if actor.user_id is not None else None
    post = Post(organization_id=targets[0].organization_id, author_id=actor.user_id, state="draft")
    session.add(post)
    session.flush()
    post.targets = [PostTarget(post_id=post.id, account_id=a.id) for a in targets]
    version = _new_version(session, post, title, body, summary, cover_url, user, clean_variants)
    audit(session, actor, "post.create", post, version=version.number, accounts=[a.id for a in targets])
    if submit:
        submit_post(session, actor, post.id)
    return post


def _new_version(
    session: Session,
    post: Post,
    title: str,
    body: str,
    summary: str,
    cover_url: str | None,
    user: User | None,
    variants: dict[str, dict[str, str]],
) -> PostVersion:
    number = (session.scalar(select(func.max(PostVersion.number)).where(PostVersion.post_id == post.id)) or 0) + 1
    version = PostVersion(
        post_id=post.id,
        number=number,
        title=title,
        body=body,
        summary=(summary or "").strip(),
        cover_url=cover_url or None,
        variants=variants,
        content_hash=PostVersion.hash_content(title, body, (summary or "").strip(), cover_url, variants),
        created_by=user.id if user else None,
    )
    session.add(version)
    session.flush()
    post.current_version_id = version.id
    post.current_version = version
    return version


def edit_post(
    session: Session,
    actor: Principal,
    post_id: int,
    *,
    title: str | None = None,
    body: str | None = None,
    summary: str | None = None,
    cover_url: str | None = None,
    variants: dict[str, Any] | None = None,
) -> Post:
    """Make a new version. Past draft, the post goes back to screening: no approval carries to new content.
    ``variants`` replaces the per-platform texts (``{}`` removes them; ``None`` keeps them)."""
    if cover_url:
        check_length("cover URL", cover_url, URL_MAX)
        check_cover(cover_url)  # before the row lock: a network call holds no lock
    post = get(session, Post, post_id, lock=True)
    require(session, actor, "post.write", post.organization_id)
    if post.state not in lifecycle.EDITABLE:
        # Published content is not changed in place on the platforms: retract it and post a corrected one.
        hint = "" if post.state in lifecycle.RETRACTION else " (retract it and create a corrected post)"
        raise Conflict(f"post {post.id} is {post.state}; it can no longer be edited{hint}")
    old = post.current_version
    assert old is not None  # noqa: S101 - a post is made with its first version; for the type checker
    new_title, new_body = _validate_content(
        title if title is not None else old.title, body if body is not None else old.body
    )
    new_summary = summary if summary is not None else old.summary
    new_cover = cover_url if cover_url is not None else old.cover_url
    _validate_extras(new_summary, new_cover)
    if cover_url and is_media_ref(cover_url):
        check_media_cover(session, actor, cover_url, post.organization_id)
    if variants is None:
        new_variants = dict(old.variants or {})
    else:
        kinds = session.scalars(
            select(Account.kind)
            .join(PostTarget, PostTarget.account_id == Account.id)
            .where(PostTarget.post_id == post.id)
        )
        new_variants = _validate_variants(variants, set(kinds))
    if PostVersion.hash_content(new_title, new_body, new_summary, new_cover, new_variants) == old.content_hash:
        return post  # nothing changed: keep the version and its approval
    user = session.get(User, actor.user_id) if actor.user_id is not None else None
    version = _new_version(session, post, new_title, new_body, new_summary, new_cover, user, new_variants)
    audit(session, actor, "post.edit", post, version=version.number, previous_state=post.state)
    if post.state != "draft":
        lifecycle.transition("post", post, "screening")
        after_commit(session, enqueue, Task.SCREEN_VERSION, version.id)
    return post


def submit_post(session: Session, actor: Principal, post_id: int) -> Post:
    """Send the current version to screening (a worker screens it)."""
    post = get(session, Post, post_id)
    require(session, actor, "post.write", post.organization_id)
    lifecycle.transition("post", post, "screening")
    audit(session, actor, "post.submit", post)
    after_commit(session, enqueue, Task.SCREEN_VERSION, post.current_version_id)
    return post


def delete_draft(session: Session, actor: Principal, post_id: int) -> None:
    """Delete a draft (never screened, never scheduled): its versions and targets go with it."""
    post = get(session, Post, post_id, lock=True)
    require(session, actor, "post.write", post.organization_id)
    if post.state != "draft":
        raise Conflict(f"post {post.id} is {post.state}; only a draft can be deleted (reject or retract it instead)")
    post.current_version_id = None
    post.current_version = None
    session.flush()
    # Versions are immutable once they exist (the ORM refuses to delete one); a draft's were never screened,
    # reviewed or sent, so nothing refers to them, and a deleted draft takes its versions with it.
    session.execute(delete(PostVersion).where(PostVersion.post_id == post.id))
    audit(session, actor, "post.delete", post)
    session.delete(post)


def duplicate_post(session: Session, actor: Principal, post_id: int) -> Post:
    """A new draft by ``actor`` with the post's current content and accounts (to correct a published post,
    or to reuse one): it is screened and reviewed like any new post when it is submitted."""
    source = get(session, Post, post_id)
    require(session, actor, "post.view", source.organization_id)
    version = source.current_version
    assert version is not None  # noqa: S101 - a post is made with its first version; for the type checker
    copy = create_post(
        session,
        actor,
        title=version.title,
        body=version.body,
        summary=version.summary,
        cover_url=version.cover_url,
        variants=version.variants,
        accounts=[t.account_id for t in source.targets],
        submit=False,
    )
    audit(session, actor, "post.duplicate", copy, copied_from=source.id)
    return copy
