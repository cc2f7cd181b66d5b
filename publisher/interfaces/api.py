"""The HTTP API (FastAPI; OpenAPI at /docs). The same operations as the CLI, over the same services.

Every user error is a 4xx with a one-line ``detail``; nothing is half-done (one transaction per request).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

import moderation
from core.broker import broker_reachable
from core.clock import iso_local, parse_local
from core.db import get_engine, session_scope
from core.errors import InvalidInput, MatrixError
from core.notify import Notification
from core.notify import mark_read as mark_notifications_read
from publisher import services
from publisher.delivery import assisted, retract
from publisher.domain.models import Post
from publisher.services.screening import configure_moderation

app = FastAPI(title="media-matrix", version="0.1.0", description="Draft once, screen, review, publish to the matrix.")


@app.exception_handler(MatrixError)
async def _publisher_error(_request: Request, exc: MatrixError) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"detail": str(exc)})


def db() -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    with session_scope() as session:
        yield session


# ----------------------------------------------------------------------------------------- schemas


class AccountIn(BaseModel):
    """A new platform account."""

    kind: str
    name: str
    credentials: dict[str, Any]
    config: dict[str, Any] = Field(default_factory=dict)
    organization: str = "default"
    check: bool = True  # ask the platform whether the credentials work before storing them


class PostIn(BaseModel):
    """A new post, optionally scheduled at once."""

    title: str
    body: str
    accounts: list[str | int] = Field(min_length=1)
    summary: str = ""
    cover_url: str | None = None
    author: str = "editor"
    at: str | None = Field(None, description="Schedule too: local time '2026-12-01 09:00', ISO 8601, or 'now'.")


class PostEdit(BaseModel):
    """Fields to change; past draft the post is screened again."""

    title: str | None = None
    body: str | None = None
    summary: str | None = None
    cover_url: str | None = None
    actor: str = "editor"


class ScheduleIn(BaseModel):
    """When to publish."""

    at: str


class ReviewIn(BaseModel):
    """A reviewer's decision."""

    reason: str = ""
    reviewer: str = "reviewer"
    content_hash: str | None = Field(None, description="The version hash you reviewed; 409 if the post changed.")


class ConfirmIn(BaseModel):
    """The URL an operator posted an assisted delivery at."""

    url: str


class TermIn(BaseModel):
    """A deny- or allow-list term of an organisation."""

    term: str
    list: str = "deny"
    category: str = "custom"
    severity: str = "review"


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


@app.get("/accounts")
def list_accounts(session: Session = Depends(db)) -> list[dict[str, Any]]:
    """Every account with its health (never its credentials)."""
    return services.account_rows(session)


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
def list_posts(state: str | None = None, limit: int = 100, session: Session = Depends(db)) -> list[dict]:
    """Posts, newest first (``state`` filters; ``limit`` 1–500)."""
    return services.post_rows(session, state=state, limit=limit)


@app.post("/posts", status_code=201)
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
def review_queue(session: Session = Depends(db)) -> list[dict[str, Any]]:
    """Posts waiting for a reviewer, with the screening's evidence."""
    return services.review_queue(session)


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
    user: str = Query(..., description="User name"),
    unread: bool = True,
    mark_read: bool = False,
    session: Session = Depends(db),
) -> list[dict[str, Any]]:
    """A person's notifications, oldest first (their post's account needs re-authorisation, a delivery failed…);
    ``mark_read=true`` marks those returned as read."""
    return services.notification_rows(session, user, unread_only=unread, mark_read=mark_read)


@app.post("/notifications/{notification_id}/read")
def read_notification(notification_id: int, session: Session = Depends(db)) -> dict[str, Any]:
    """Mark one notification read."""
    n = services.get(session, Notification, notification_id)
    mark_notifications_read([n])
    return {"id": n.id, "read_at": iso_local(n.read_at)}


@app.post("/screen")
def screen(payload: dict[str, str]) -> dict[str, Any]:
    """Screen a text with the moderation engine: ``{"text": "..."}``."""
    if not payload.get("text", "").strip():
        raise InvalidInput("text is empty")
    configure_moderation()
    return moderation.screen(payload["text"]).to_dict()
