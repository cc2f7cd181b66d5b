"""The HTTP API (FastAPI; OpenAPI at /docs). The same operations as the CLI, over the same services.

Every user error is a 4xx with a one-line ``detail``; nothing is half-done (one transaction per request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session
from starlette.routing import Match
from starlette.types import Scope

import moderation
from core import logredact
from core.broker import broker_reachable
from core.clock import iso_local, parse_local
from core.crypto import check_secret_key
from core.db import get_engine, session_scope
from core.errors import InvalidInput, MatrixError
from core.notify import Notification
from core.notify import mark_read as mark_notifications_read
from core.settings import Settings, get_settings
from publisher import services
from publisher.delivery import assisted, retract
from publisher.domain.models import Post
from publisher.interfaces.limits import BodyLimit
from publisher.services import LABEL_MAX, LIST_MAX, NAME_MAX, REASON_MAX, SUMMARY_MAX, TARGETS_MAX, URL_MAX
from publisher.services.screening import configure_moderation

# At import, before uvicorn logs a request line: query strings and headers reach no log in clear.
logredact.install()


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # Served without `matrix api` (`uvicorn publisher.interfaces.api:app`), the API still refuses to start
    # with a missing, public or short MATRIX_SECRET_KEY outside the embedded default.
    check_secret_key()
    yield


app = FastAPI(
    title="media-matrix",
    version="0.1.0",
    description="Draft once, screen, review, publish to the matrix.",
    lifespan=_lifespan,
)


@app.exception_handler(MatrixError)
async def _publisher_error(_request: Request, exc: MatrixError) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"detail": str(exc)})


@app.exception_handler(DataError)
async def _data_error(_request: Request, exc: DataError) -> JSONResponse:
    # A backstop: the services check what they store, but a value the database itself refuses (a NUL
    # character in a PostgreSQL text column, a number out of its range) is still the request's fault, not
    # the server's. The database's own first line says which.
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else "invalid value"
    return JSONResponse(status_code=422, content={"detail": f"the database refused a value: {reason}"})


# ------------------------------------------------------------------------------------- body caps

# Routes that take more (a post) or less (a text to screen) than the default cap, MATRIX_API_BODY_MAX_BYTES.
_BODY_CAPS: dict[Callable[..., Any], Callable[[Settings], int]] = {}

# JSON escapes of non-ASCII text (Python's json.dumps writes 汉 as \u6c49) take up to 6 bytes a character.
_JSON_BYTES_PER_CHAR = 6


def body_cap(cap: Callable[[Settings], int]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a route its own request-body cap in bytes (computed from the settings at each request)."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        _BODY_CAPS[endpoint] = cap
        return endpoint

    return mark


def _post_cap(settings: Settings) -> int:
    """A post: its longest body, escaped, on top of the default cap for everything else."""
    return settings.api_body_max_bytes + _JSON_BYTES_PER_CHAR * settings.body_max_chars


def _screen_cap(settings: Settings) -> int:
    """A text to screen, escaped, and a little for the JSON around it."""
    return _JSON_BYTES_PER_CHAR * settings.screen_max_chars + 4096


def _body_cap_for(scope: Scope) -> int:
    """The request-body cap of the route this request goes to (the default for any other path)."""
    settings = get_settings()
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.matches(scope)[0] is Match.FULL:
            cap = _BODY_CAPS.get(route.endpoint)
            return cap(settings) if cap else settings.api_body_max_bytes
    return settings.api_body_max_bytes


app.add_middleware(BodyLimit, cap_for=_body_cap_for)


def db() -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    with session_scope() as session:
        yield session


# ----------------------------------------------------------------------------------------- schemas

# Every text field is bounded: by the services' own limits where they have one (the same constants), by the
# database column otherwise. A post's body is bounded by MATRIX_BODY_MAX_CHARS (checked by the service; a
# setting, so not in the schema) and by the route's body cap; the credential and config objects by the cap.
_TIME_MAX = 64  # "2026-12-01 09:00", ISO 8601 with an offset, "now"
_HASH_MAX = 64  # a content hash: SHA-256 in hex
_WORD_MAX = 30  # a kind, a list, a category or a severity: the services check them against their choices

Name = Annotated[str, Field(max_length=NAME_MAX)]
AccountRef = Annotated[str, Field(max_length=LABEL_MAX)] | int


class AccountIn(BaseModel):
    """A new platform account."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"kind": "manual", "name": "县融媒体中心", "credentials": {}, "check": False}]}
    )

    kind: str = Field(max_length=_WORD_MAX)
    name: str = Field(max_length=LABEL_MAX)
    credentials: dict[str, Any]
    config: dict[str, Any] = Field(default_factory=dict)
    organization: str = Field("default", max_length=LABEL_MAX)
    check: bool = True  # ask the platform whether the credentials work before storing them


class PostIn(BaseModel):
    """A new post, optionally scheduled at once."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"title": "通知", "body": "正文", "accounts": [1]}]})

    title: str = Field(max_length=services.TITLE_MAX)
    body: str = Field(description="Markdown, at most MATRIX_BODY_MAX_CHARS characters.")
    accounts: list[AccountRef] = Field(min_length=1, max_length=TARGETS_MAX)
    summary: str = Field("", max_length=SUMMARY_MAX)
    cover_url: str | None = Field(None, max_length=URL_MAX)
    author: Name = "editor"
    at: str | None = Field(
        None, max_length=_TIME_MAX, description="Schedule too: local time '2026-12-01 09:00', ISO 8601, or 'now'."
    )


class PostEdit(BaseModel):
    """Fields to change; past draft the post is screened again."""

    title: str | None = Field(None, max_length=services.TITLE_MAX)
    body: str | None = Field(None, description="Markdown, at most MATRIX_BODY_MAX_CHARS characters.")
    summary: str | None = Field(None, max_length=SUMMARY_MAX)
    cover_url: str | None = Field(None, max_length=URL_MAX)
    actor: Name = "editor"


class ScheduleIn(BaseModel):
    """When to publish."""

    at: str = Field(max_length=_TIME_MAX)


class ReviewIn(BaseModel):
    """A reviewer's decision."""

    reason: str = Field("", max_length=REASON_MAX)
    reviewer: Name = "reviewer"
    content_hash: str | None = Field(
        None, max_length=_HASH_MAX, description="The version hash you reviewed; 409 if the post changed."
    )


class ConfirmIn(BaseModel):
    """The URL an operator posted an assisted delivery at."""

    url: str = Field(max_length=URL_MAX)


class TermIn(BaseModel):
    """A deny- or allow-list term of an organisation."""

    term: str = Field(max_length=services.TERM_MAX)
    list: str = Field("deny", max_length=_WORD_MAX)
    category: str = Field("custom", max_length=_WORD_MAX)
    severity: str = Field("review", max_length=_WORD_MAX)


class ScreenIn(BaseModel):
    """A text to screen (at most MATRIX_SCREEN_MAX_CHARS characters)."""

    text: str = ""


# ------------------------------------------------------------------------------------------ routes


@app.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> str:
    """A start page with links."""
    return (
        "<!doctype html><meta charset='utf-8'><title>media-matrix</title>"
        "<h1>media-matrix</h1><p>API documentation: <a href='/docs'>/docs</a> · "
        "<a href='/health'>/health</a> · <a href='/posts'>/posts</a> · <a href='/accounts'>/accounts</a></p>"
    )


@app.get("/health")
def health() -> JSONResponse:
    """Database and broker reachable? 200 if both, 503 otherwise."""
    status: dict[str, Any] = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        status["database"] = "ok"
    except Exception as exc:
        status["database"] = f"error: {exc.__class__.__name__}"
    try:
        broker_reachable(timeout=3)
        status["broker"] = "ok"
    except Exception as exc:
        status["broker"] = f"error: {exc.__class__.__name__}"
    ok = all(v == "ok" for v in status.values())
    return JSONResponse(status_code=200 if ok else 503, content={"status": "ok" if ok else "degraded", **status})


# Every list is paged: ``limit`` 1..LIST_MAX, ``offset`` from 0 (checked by the read models, one-line 422s).
Limit = Annotated[int, Query(description=f"At most this many rows (1-{LIST_MAX}).")]
Offset = Annotated[int, Query(description="Skip this many rows first.")]


@app.get("/accounts")
def list_accounts(limit: Limit = LIST_MAX, offset: Offset = 0, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """Accounts by id with their health (never their credentials)."""
    return services.account_rows(session, limit=limit, offset=offset)


@app.post("/accounts", status_code=201)
def add_account(body: AccountIn, session: Session = Depends(db)) -> dict[str, Any]:
    """Register a platform account (its credentials checked with the platform first unless ``check`` is false)."""
    if body.check:  # before the session's transaction begins (services.check_new_account)
        services.check_new_account(body.kind, body.name, body.credentials, body.config)
    account = services.add_account(
        session,
        kind=body.kind,
        name=body.name,
        credentials=body.credentials,
        config=body.config,
        organization=body.organization,
        actor="api",
    )
    return {"id": account.id, "kind": account.kind, "name": account.name}


@app.post("/accounts/{account_id}/reauthorize")
def reauthorize(
    account_id: int, credentials: dict[str, Any], check: bool = True, session: Session = Depends(db)
) -> dict[str, Any]:
    """New credentials (the JSON body); ``?check=false`` stores them without asking the platform first."""
    if check:  # before the session's transaction begins (services.check_new_account)
        services.check_new_credentials(account_id, credentials)
    account = services.reauthorize_account(session, account_id, credentials, actor="api")
    return {"id": account.id, "status": account.status}


@app.get("/posts")
def list_posts(
    state: Annotated[str | None, Query(max_length=_WORD_MAX)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    session: Session = Depends(db),
) -> list[dict]:
    """Posts, newest first (``state`` filters)."""
    return services.post_rows(session, state=state, limit=limit, offset=offset)


@app.post("/posts", status_code=201)
@body_cap(_post_cap)
def create_post(body: PostIn, session: Session = Depends(db)) -> dict[str, Any]:
    """Create a post and send it to screening; ``at`` schedules it too."""
    due = parse_local(body.at) if body.at else None
    post = services.create_post(
        session,
        title=body.title,
        body=body.body,
        accounts=body.accounts,
        summary=body.summary,
        cover_url=body.cover_url,
        author=body.author,
    )
    if due is not None:
        services.schedule_post(session, post.id, due, actor=body.author)
    session.flush()
    return services.post_summary(session, post)


@app.get("/posts/{post_id}")
def show_post(post_id: int, session: Session = Depends(db)) -> dict[str, Any]:
    """A post with its screening, schedule and deliveries (with their newest engagement numbers)."""
    return services.post_detail(session, post_id)


@app.patch("/posts/{post_id}")
@body_cap(_post_cap)
def edit_post(post_id: int, body: PostEdit, session: Session = Depends(db)) -> dict[str, Any]:
    """Make a new version of a post."""
    post = services.edit_post(
        session,
        post_id,
        title=body.title,
        body=body.body,
        summary=body.summary,
        cover_url=body.cover_url,
        actor=body.actor,
    )
    return services.post_summary(session, post)


@app.post("/posts/{post_id}/submit")
def submit_post(post_id: int, session: Session = Depends(db)) -> dict[str, Any]:
    """Send a draft to screening."""
    return services.post_summary(session, services.submit_post(session, post_id, actor="api"))


@app.post("/posts/{post_id}/schedule")
def schedule_post(post_id: int, body: ScheduleIn, session: Session = Depends(db)) -> dict[str, Any]:
    """Schedule a post; it goes out then once its current version is approved."""
    due: datetime = parse_local(body.at)
    services.schedule_post(session, post_id, due, actor="api")
    return services.post_summary(session, services.get(session, Post, post_id))


@app.post("/posts/{post_id}/approve")
def approve_post(post_id: int, body: ReviewIn, session: Session = Depends(db)) -> dict[str, Any]:
    """Approve a post that screening sent to review."""
    services.review(
        session, post_id, approve=True, reason=body.reason, reviewer=body.reviewer, content_hash=body.content_hash
    )
    return services.post_summary(session, services.get(session, Post, post_id))


@app.post("/posts/{post_id}/reject")
def reject_post(post_id: int, body: ReviewIn, session: Session = Depends(db)) -> dict[str, Any]:
    """Reject a post (a reason is required)."""
    services.review(
        session, post_id, approve=False, reason=body.reason, reviewer=body.reviewer, content_hash=body.content_hash
    )
    return services.post_summary(session, services.get(session, Post, post_id))


@app.post("/posts/{post_id}/retry")
def retry_post(post_id: int, session: Session = Depends(db)) -> dict[str, Any]:
    """Retry only the deliveries that failed."""
    services.retry_post(session, post_id, actor="api")
    return services.post_summary(session, services.get(session, Post, post_id))


@app.post("/posts/{post_id}/retract")
def retract_post(post_id: int) -> dict[str, Any]:
    """Retract from every platform now; one line per delivery."""
    return {"post": post_id, "deliveries": retract.retract_post(post_id, actor="api")}


@app.get("/reviews")
def review_queue(limit: Limit = 100, offset: Offset = 0, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """Posts waiting for a reviewer, oldest first, with the screening's evidence."""
    return services.review_queue(session, limit=limit, offset=offset)


@app.get("/deliveries/{delivery_id}/package")
def delivery_package(delivery_id: int) -> Response:
    """The ready-to-paste ZIP of an assisted delivery."""
    data = assisted.package_for(delivery_id)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="delivery-{delivery_id}.zip"'},
    )


@app.post("/deliveries/{delivery_id}/confirm")
def confirm_delivery(delivery_id: int, body: ConfirmIn) -> dict[str, Any]:
    """Record the URL of an assisted delivery an operator posted by hand."""
    d = assisted.confirm_manual(delivery_id, body.url, actor="api")
    return {"id": d.id, "state": d.state, "remote_url": d.remote_url}


@app.post("/deliveries/{delivery_id}/removed")
def delivery_removed(delivery_id: int) -> dict[str, Any]:
    """An operator deleted by hand a delivery without a retraction API (its post was retracted)."""
    d = assisted.confirm_removed(delivery_id, actor="api")
    return {"id": d.id, "state": d.state, "remote_url": d.remote_url}


@app.post("/organizations/{org_id}/terms", status_code=201)
def add_term(org_id: int, body: TermIn, session: Session = Depends(db)) -> dict[str, Any]:
    """Add (or update) a term of an organisation's deny- or allow-list."""
    entry, created = services.add_moderation_term(
        session, org_id, body.term, list_=body.list, category=body.category, severity=body.severity
    )
    return {"term": entry.term, "list": entry.list, "category": entry.category, "severity": entry.severity,
            "created": created}  # fmt: skip


@app.get("/notifications")
def notifications(
    user: str = Query(..., max_length=NAME_MAX, description="User name"),
    unread: bool = True,
    mark_read: bool = False,
    limit: Limit = 200,
    offset: Offset = 0,
    session: Session = Depends(db),
) -> list[dict[str, Any]]:
    """A person's notifications, oldest first (their post's account needs re-authorisation, a delivery failed…):
    the newest ``limit`` after the ``offset`` newest; ``mark_read=true`` marks those returned as read."""
    return services.notification_rows(
        session, user, unread_only=unread, mark_read=mark_read, limit=limit, offset=offset
    )


@app.post("/notifications/{notification_id}/read")
def read_notification(notification_id: int, session: Session = Depends(db)) -> dict[str, Any]:
    """Mark one notification read."""
    n = services.get(session, Notification, notification_id)
    mark_notifications_read([n])
    return {"id": n.id, "read_at": iso_local(n.read_at)}


@app.post("/screen")
@body_cap(_screen_cap)
def screen(payload: ScreenIn) -> dict[str, Any]:
    """Screen a text with the moderation engine: ``{"text": "..."}``."""
    if not payload.text.strip():
        raise InvalidInput("text is empty")
    limit = get_settings().screen_max_chars  # screening time grows with the length (core.settings)
    if len(payload.text) > limit:
        raise InvalidInput(f"text is {len(payload.text)} characters; at most {limit}")
    configure_moderation()
    return moderation.screen(payload.text).to_dict()
