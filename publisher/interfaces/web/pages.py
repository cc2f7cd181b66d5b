"""The web application's pages: server-rendered Jinja2 over the same services and read models as the API and CLI.

Pages read; what changes something is a call from the page to the API's own routes (``static/app.js`` sends the
session's CSRF secret in ``X-CSRF-Token``), so no action exists twice. The lists and the post page render
without JavaScript; deciding, composing and retracting need it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import PostContent, get_channel_class
from channels.errors import ChannelError
from core.clock import iso_local
from core.clock import now as clock_now
from core.db import session_scope
from core.errors import Forbidden, MatrixError
from core.settings import get_settings
from moderation.types import CATEGORIES
from monitor import alert_channels
from publisher import services
from publisher.domain.models import ROLES, Organization, Post, PostVersion
from publisher.interfaces.identity import CSRF_COOKIE, SESSION_COOKIE, client_source, current_principal
from publisher.interfaces.web.messages import DEFAULT_LANGUAGE, LANGUAGES, translate
from publisher.services import Principal
from publisher.services.channels import account_info, make_channel
from publisher.services.people import SESSION_ABSOLUTE, holds
from publisher.services.rescreen import flag_rows
from publisher.services.reviews import waiting_steps

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
LANG_COOKIE = "mm_lang"
REVIEW_PAGE = 25  # posts per page of the review queue (each row carries its screening evidence and deadline)

templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)


def db() -> Iterator[Session]:
    """One read transaction per page."""
    with session_scope() as session:
        yield session


def language(request: Request) -> str:
    """``?lang=``, else the language cookie, else the browser's first choice of ours, else Chinese."""
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if asked in LANGUAGES:
        return asked
    accept = request.headers.get("accept-language", "").lower()
    if accept.startswith("en"):
        return "en"
    return DEFAULT_LANGUAGE


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page in the request's language (``t`` translates; ``actor`` is whoever is signed in, if anyone)."""
    lang = language(request)
    actor = getattr(request.state, "principal", None)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "t": lambda key: translate(key, lang),
            "lang": lang,
            "actor": actor,
            "my_roles": actor.roles() if actor else set(),
            **context,
        },
        status_code=status,
    )
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


def error_page(request: Request, exc: MatrixError) -> HTMLResponse:
    """A user error as a page (403 not allowed, 404 not found, …) with its one-line reason."""
    key = {403: "forbidden", 404: "not_found"}.get(exc.status_code, "error")
    return render(request, "error.html", exc.status_code, title_key=key, message=str(exc))


def is_page(path: str) -> bool:
    """Whether a path is one of the web application's pages (errors are pages there, JSON elsewhere)."""
    return path == "/" or path.startswith(("/ui/", "/login"))


Me = Annotated[Principal, Depends(current_principal)]
Db = Annotated[Session, Depends(db)]

# ------------------------------------------------------------------------------------------ signing in


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in form."""
    return render(request, "login.html", next=_local_path(next), error=None)


@router.post("/login")
def login_form(request: Request, name: str = Form(""), password: str = Form(""), next: str = Form("/")) -> Response:
    """Sign in from the form: the session cookie (HttpOnly) and its CSRF secret (read by the page's script)."""
    try:
        actor = services.sign_in(name, password, source=client_source(request.scope, "web"))
    except MatrixError as exc:
        return render(request, "login.html", exc.status_code, next=_local_path(next), error=str(exc), user_name=name)
    with session_scope() as session:
        _, secret, csrf = services.issue_credential(session, actor, kind="session", name="web")
    response = RedirectResponse(_local_path(next), status_code=303)
    secure = request.url.scheme == "https" or get_settings().cookie_secure
    age = int(SESSION_ABSOLUTE.total_seconds())
    response.set_cookie(SESSION_COOKIE, secret, max_age=age, httponly=True, samesite="strict", secure=secure)
    # Not HttpOnly: the page's script reads it to send it back as X-CSRF-Token (a double submit, checked
    # against the session's own secret by the identity middleware; another site can neither read nor send it).
    response.set_cookie(CSRF_COOKIE, csrf, max_age=age, httponly=False, samesite="strict", secure=secure)
    return response


def _local_path(path: str) -> str:
    """Only a path on this site is a place to go after signing in (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def login_redirect(path: str) -> RedirectResponse:
    """Where an anonymous browser asking for a page is sent."""
    return RedirectResponse(f"/login?next={quote(path)}", status_code=303)


# ------------------------------------------------------------------------------------------ home


@router.get("/")
def home(request: Request, actor: Me, session: Db) -> Response:
    """A home per role: an editor's drafts and scheduled posts, a reviewer's queue, an admin's and a monitor's
    areas (a person with several roles sees each)."""
    roles = actor.roles()
    mine = []
    if "editor" in roles:
        mine = [
            p
            for p in services.post_rows(session, actor, limit=200)
            if p["state"] in ("draft", "screening", "needs_review", "approved", "scheduled", "rejected", "failed")
        ][:50]
    queue = services.review_queue(session, actor, limit=REVIEW_PAGE) if roles & {"reviewer", "admin"} else []
    accounts = services.account_rows(session, actor, limit=50) if roles & {"admin", "editor"} else []
    notes = services.notification_rows(session, actor, limit=20)
    alerts = alert_channels.alert_rows(session, actor, limit=10) if roles & {"monitor", "admin"} else []
    return render(
        request, "home.html", roles=roles, mine=mine, queue=queue, accounts=accounts, notes=notes, alerts=alerts
    )


# ------------------------------------------------------------------------------------------ posts


@router.get("/ui/posts")
def posts_page(request: Request, actor: Me, session: Db, state: str | None = None) -> Response:
    """Every post the person may see, newest first (``?state=`` filters)."""
    try:
        rows = services.post_rows(session, actor, state=state or None, limit=200)
    except MatrixError as exc:
        return error_page(request, exc)
    return render(request, "posts.html", rows=rows, state=state or "")


def _visible(session: Session, actor: Principal, post_id: int) -> Post:
    """The post, or a 403 page's reason if it is in someone else's part of the matrix (404 if there is none)."""
    post = services.get(session, Post, post_id)
    if not holds(session, actor, services.people.PERMISSIONS["post.view"], post.organization_id):
        raise Forbidden(f"post {post_id} belongs to another organisation's part of the matrix")
    return post


def marked_fields(version: PostVersion, verdict: dict[str, Any] | None) -> dict[str, list[tuple[str, str | None]]]:
    """Each screened field of a version cut into (text, category or None) pieces: the hits marked by category.

    ``verdict`` is a post read model's screening (:func:`services.post_summary`), whose hits carry ``where``."""
    fields = {field: text for field, text in version.screened_parts()}
    spans: dict[str, list[tuple[int, int, str]]] = {f: [] for f in fields}
    for hit in (verdict or {}).get("hits", []):
        where = hit["where"]  # the read model placed each hit in its field already (views.hit_context)
        if where["field"] in spans and where["end"] > where["start"]:
            spans[where["field"]].append((where["start"], where["end"], hit.get("category") or ""))
    out: dict[str, list[tuple[str, str | None]]] = {}
    for field, text in fields.items():
        pieces, at = [], 0
        for start, end, category in sorted(spans[field]):
            if start < at:  # overlapping hits: the first one marks the shared characters
                start = at
            if start >= end:
                continue
            if start > at:
                pieces.append((text[at:start], None))
            pieces.append((text[start:end], category))
            at = end
        if at < len(text):
            pieces.append((text[at:], None))
        out[field] = pieces
    return out


def _diff_lines(version: PostVersion) -> list[str]:
    """A version as lines to compare: the title, the body, then each platform's own title and text."""
    lines = [f"# {version.title}", *version.body.splitlines()]
    for field, text in version.screened_parts():
        if "." in field:
            lines += [f"## {field}", *text.splitlines()]
    return lines


def _previous_diff(session: Session, post: Post) -> list[tuple[str, str]]:
    """The current version against the previous one, line by line: (``+``/``-``/`` ``, line)."""
    version = post.current_version
    if version is None or version.number < 2:
        return []
    previous = session.query(PostVersion).filter_by(post_id=post.id, number=version.number - 1).one_or_none()
    if previous is None:
        return []
    old, new = _diff_lines(previous), _diff_lines(version)
    return [(line[0], line[2:]) for line in difflib.ndiff(old, new) if line[:1] in ("+", "-", " ")]


@router.get("/ui/posts/{post_id}")
def post_page(request: Request, post_id: int, actor: Me, session: Db) -> Response:
    """A post: its content with the hits marked, the review chain, each delivery's timeline, and what may be done."""
    try:
        post = _visible(session, actor, post_id)
        detail = services.post_detail(session, actor, post_id)
        timeline = services.delivery_timeline(session, actor, post_id)
    except MatrixError as exc:
        return error_page(request, exc)
    version = post.current_version
    return render(
        request,
        "post.html",
        post=detail,
        version=version,
        marked=marked_fields(version, detail["screening"]),
        chain=services.chain_progress(session, post),
        timeline=timeline,
        diff=_previous_diff(session, post),
        may_write=holds(session, actor, services.people.PERMISSIONS["post.write"], post.organization_id),
        may_review=holds(session, actor, services.people.PERMISSIONS["post.review"], post.organization_id),
        may_retract=holds(session, actor, services.people.PERMISSIONS["post.retract"], post.organization_id),
    )


# ------------------------------------------------------------------------------------------ review


@router.get("/ui/review")
def review_page(request: Request, actor: Me, session: Db, page: int = 0) -> Response:
    """The posts waiting for the person's review, oldest first, 25 a page; j/k move, Enter opens."""
    page = max(0, min(page, 10_000))
    queue = services.review_queue(session, actor, limit=REVIEW_PAGE, offset=page * REVIEW_PAGE)
    t = clock_now()
    posts = [services.get(session, Post, row["id"]) for row in queue]  # loaded already (the identity map)
    waiting = waiting_steps(session, posts)  # the step each waits for, and its deadline: reviewers work by these
    for row in queue:
        w = waiting.get(row["id"])
        row["waiting"] = w and {
            "step": w.step.name,
            "due": iso_local(w.due),
            "overdue": w.due is not None and w.due < t,
        }
    # live posts a re-screen flagged come first: they are out there now (publisher.services.rescreen)
    flags = flag_rows(session, actor, limit=REVIEW_PAGE) if page == 0 else []
    return render(request, "review_queue.html", queue=queue, page=page, more=len(queue) == REVIEW_PAGE, flags=flags)


# ------------------------------------------------------------------------------------------ compose


@router.get("/ui/compose")
def compose_page(request: Request, actor: Me, session: Db) -> Response:
    """Write a post once for accounts of the matrix; the preview and the screening verdict before submitting."""
    writable = services.visible_orgs(session, actor, "post.write")
    accounts = [
        a
        for a in services.account_rows(session, actor)
        if a.get("status") != "disabled" and (writable is None or a.get("organization_id") in writable)
    ]
    kinds = sorted({a["kind"] for a in accounts if a["kind"] != "manual"})
    names = {kind: get_channel_class(kind).display_name or kind for kind in kinds}
    return render(request, "compose.html", accounts=accounts, kinds=names, timezone=get_settings().timezone)


class PreviewIn(BaseModel):
    """What the compose page has so far."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field("", max_length=services.TITLE_MAX)
    body: str = Field("", max_length=200_000)
    summary: str = Field("", max_length=services.SUMMARY_MAX)
    accounts: list[int] = Field(default_factory=list, max_length=services.TARGETS_MAX)
    variants: dict[str, dict[str, str]] = Field(default_factory=dict, max_length=8)


PREVIEW_LINK = "https://example.invalid/website-copy"  # Weibo's status links to the website copy, not known yet


@router.post("/ui/preview")
def preview(request: Request, body: PreviewIn, actor: Me, session: Db) -> HTMLResponse:
    """Each chosen platform's rendering of the draft, within its limits, by the adapters' own renderers."""
    rows = {a["id"]: a for a in services.account_rows(session, actor)}
    chosen = [rows[i] for i in body.accounts if i in rows] or list(rows.values())
    by_kind: dict[str, int] = {}
    for a in chosen:
        by_kind.setdefault(a["kind"], a["id"])
    previews = []
    for kind, account_id in sorted(by_kind.items()):
        variant = body.variants.get(kind, {})  # a platform's own text, where the editor wrote one
        title = (variant.get("title") or "").strip()[: services.TITLE_MAX] or body.title or "…"
        text = (variant.get("body") or "").strip()[:200_000] or body.body or "…"
        content = PostContent(title=title, body=text, summary=body.summary)
        channel = make_channel(account_info(services.find_account(session, account_id)))
        try:
            rendered = channel.render(content, link=PREVIEW_LINK) if kind == "weibo" else channel.render(content)
            previews.append({"kind": kind, "name": channel.display_name or kind, "r": rendered, "error": None})
        except ChannelError as exc:
            previews.append({"kind": kind, "name": channel.display_name or kind, "r": None, "error": str(exc)})
        finally:
            channel.close()
    return render(request, "_previews.html", previews=previews)


@router.get("/ui/notifications")
def notifications_page(request: Request, actor: Me, session: Db) -> Response:
    """The person's notifications, newest last (shown ones are marked read)."""
    notes = services.notification_rows(session, actor, unread_only=False, mark_read=True, limit=200)
    return render(request, "notifications.html", notes=notes)


ACCOUNTS_PAGE = 100  # a province's matrix has hundreds of accounts: a page of them, health and quota each


@router.get("/ui/accounts")
def accounts_page(request: Request, actor: Me, session: Db, page: int = 0) -> Response:
    """Each account's health: active, needs re-authorisation, paused until when (credentials are never shown)."""
    page = max(0, min(page, 100_000))
    accounts = services.account_rows(session, actor, limit=ACCOUNTS_PAGE, offset=page * ACCOUNTS_PAGE)
    return render(
        request,
        "accounts.html",
        accounts=accounts,
        reauth=reauth_forms(session, actor, accounts),
        page=page,
        more=len(accounts) == ACCOUNTS_PAGE,
    )


def reauth_forms(session: Session, actor: Principal, accounts: list[dict[str, Any]]) -> dict[int, tuple[str, ...]]:
    """The accounts ``actor`` may re-authorise in place, with the credential keys each one's platform takes."""
    managed = services.visible_orgs(session, actor, "account.manage")
    return {
        a["id"]: get_channel_class(a["kind"]).credential_fields
        for a in accounts
        if get_channel_class(a["kind"]).credential_fields and (managed is None or a["organization_id"] in managed)
    }


# ------------------------------------------------------------------------------------------ admin


def _managed_orgs(session: Session, actor: Principal, action: str) -> list[tuple[int, str]]:
    """The organisations ``actor`` may act on for ``action``, as (id, name), for the pages' pickers."""
    orgs = services.visible_orgs(session, actor, action)
    q = select(Organization.id, Organization.name).order_by(Organization.id)
    if orgs is not None:
        q = q.where(Organization.id.in_(orgs))
    return [(i, n) for i, n in session.execute(q).all()]


@router.get("/ui/users")
def users_page(request: Request, actor: Me, session: Db) -> Response:
    """The users an admin looks after: their roles; add one, give a role, disable."""
    try:
        users = services.user_rows(session, actor)
    except MatrixError as exc:
        return error_page(request, exc)
    orgs = _managed_orgs(session, actor, "user.manage")
    return render(request, "users.html", users=users, orgs=orgs, roles=ROLES)


@router.get("/ui/policies")
def policies_page(request: Request, actor: Me, session: Db) -> Response:
    """What screening and review apply per organisation: review chains, term lists, reviewers' proposals."""
    try:
        rows = services.policy_rows(session, actor)
        proposals = services.proposals(session, actor)
    except MatrixError as exc:
        return error_page(request, exc)
    names = {r["id"]: r["name"] for r in rows}
    for p in proposals:
        p["organization"] = names.get(p["organization_id"], p["organization_id"])
    return render(request, "policies.html", orgs=rows, proposals=proposals, categories=CATEGORIES)


@router.get("/ui/audit")
def audit_page(
    request: Request,
    actor: Me,
    session: Db,
    user: str = "",
    object_type: str = "",
    object_id: str = "",
    action: str = "",
) -> Response:
    """The audit log with its filters (admins); `Verify` checks the hash chain."""
    try:
        rows = services.audit_rows(
            session,
            actor,
            user=user[: services.NAME_MAX] or None,
            object_type=object_type[:40] or None,
            object_id=int(object_id) if object_id.isdigit() and len(object_id) < 19 else None,
            action=action[:60] or None,
            limit=200,
        )
    except MatrixError as exc:
        return error_page(request, exc)
    filters = {"user": user, "object_type": object_type, "object_id": object_id, "action": action}
    return render(request, "audit.html", rows=rows, filters=filters)


def swagger_page() -> HTMLResponse:
    """The API's documentation with Swagger UI's files from this server (works offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="media-matrix API",
        swagger_js_url="/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui-5.35.0/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
    )
