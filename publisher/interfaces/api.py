"""The HTTP API (FastAPI; OpenAPI at /docs). The same operations as the CLI, over the same services.

Every user error is a 4xx with a one-line ``detail``; nothing is half-done (one transaction per request).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import Session
from starlette.routing import Match
from starlette.types import Scope

import moderation
from core import logredact
from core.audit import verify as verify_audit
from core.broker import broker_reachable, queue_depths, screening_queue, status_queue
from core.clock import iso_local, parse_local
from core.crypto import check_secret_key
from core.db import BUSY_REASON, BUSY_RETRY_AFTER_S, READ_ONLY, get_engine, is_database_busy, session_scope
from core.errors import InvalidInput, MatrixError, NotFound
from core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from core.metrics import exposition
from core.notify import Notification
from core.notify import mark_read as mark_notifications_read
from core.settings import Settings, get_settings
from monitor.settings import get_monitor_settings, monitor_queue
from publisher import services
from publisher.delivery import assisted, retract
from publisher.domain.models import Post
from publisher.interfaces import live_flags as live_flags_action
from publisher.interfaces.identity import SESSION_COOKIE, RequireIdentity, client_source, current_principal
from publisher.interfaces.limits import BodyLimit
from publisher.interfaces.monitor_api import router as monitor_router
from publisher.interfaces.web import dashboards as web_dashboards
from publisher.interfaces.web import monitor_pages as web_monitor
from publisher.interfaces.web import pages as web
from publisher.services import LABEL_MAX, LIST_MAX, NAME_MAX, REASON_MAX, SUMMARY_MAX, TARGETS_MAX, URL_MAX, Principal
from publisher.services import organizations as org_services
from publisher.services.observability import database_gauges
from publisher.services.people import SESSION_ABSOLUTE
from publisher.services.rescreen import flag_rows, keep_flag, request_rescreen
from publisher.services.screening import configure_moderation

# At import, before uvicorn logs a request line: query strings and headers reach no log in clear.
logredact.install()


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # Served without `matrix api` (`uvicorn publisher.interfaces.api:app`), the API still refuses to start
    # with a missing, public or short MATRIX_SECRET_KEY outside the embedded default.
    check_secret_key()
    # Everything imported so far (templates, the models, the lexicons) lives as long as the process: moved out of
    # the collector's generations, so a collection during a request does not walk it again (p95 of the pages)
    if not gc.get_freeze_count():  # once a process (a test process starts the app many times)
        gc.collect()
        gc.freeze()
    yield


app = FastAPI(
    title="media-matrix",
    version="0.1.0",
    description="Draft once, screen, review, publish to the matrix.",
    lifespan=_lifespan,
    docs_url=None,  # served below with Swagger UI's files from this server: a CDN is out of reach offline
    redoc_url=None,
)
app.mount("/static", StaticFiles(directory=str(web.STATIC_DIR)), name="static")
app.include_router(web.router)
app.include_router(web_dashboards.router)
app.include_router(web_monitor.router)


@app.exception_handler(MatrixError)
async def _publisher_error(request: Request, exc: MatrixError) -> Response:
    if web.is_page(request.url.path):
        return web.error_page(request, exc)
    return JSONResponse(status_code=exc.status_code, content={"detail": str(exc)})


@app.exception_handler(RequestValidationError)
async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # One line naming the field, as every other user error (pydantic's list of dicts is for programs).
    errors = exc.errors()
    detail = _describe_error(errors[0]) if errors else "invalid request"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return JSONResponse(status_code=422, content={"detail": detail})


def _describe_error(error: dict[str, Any]) -> str:
    where = [str(part) for part in error.get("loc", ()) if part not in ("body",)]
    # a query/path parameter's name is enough; a body field is named by its path inside the body
    name = ".".join(where[1:] if where and where[0] in ("query", "path", "header", "cookie") else where) or "body"
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"unknown field {name!r}"
    if kind == "missing":
        return f"{name} is required"
    if kind in ("json_invalid", "json_type"):
        return f"the body is not valid JSON: {error.get('msg', '')}".rstrip(": ")
    return f"{name}: {error.get('msg', 'invalid')}"


@app.exception_handler(OperationalError)
async def _database_busy(_request: Request, exc: OperationalError) -> JSONResponse:
    # Another process (a worker) held a lock longer than the busy timeout: the server is busy, not broken, so
    # 503 with Retry-After and one line, never a 500 with a traceback. Any other operational error is a fault.
    if not is_database_busy(exc):
        raise exc
    return JSONResponse(
        status_code=503,
        content={"detail": BUSY_REASON},
        headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
    )


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
    # the common body and one per platform at most (the four platform kinds may each have their own text)
    return settings.api_body_max_bytes + _JSON_BYTES_PER_CHAR * settings.body_max_chars * (1 + _VARIANTS_MAX)


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


app.include_router(monitor_router)
app.add_middleware(BodyLimit, cap_for=_body_cap_for)
# Added last, so it runs first: nobody unidentified reaches a route, nor has a body read.
app.add_middleware(RequireIdentity)


def db() -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    with session_scope() as session:
        yield session


# ----------------------------------------------------------------------------------------- schemas

# Every text field is bounded: by the services' own limits where they have one (the same constants), by the
# database column otherwise. A post's body is bounded by MATRIX_BODY_MAX_CHARS (checked by the service; a
# setting, so not in the schema) and by the route's body cap; the credential and config objects by the cap.
# No body names who is acting: that is the signed-in principal. Unknown fields are refused (422), so a typo
# such as ``schedule_at`` is an error, not a silently dropped field.
_TIME_MAX = 64  # "2026-12-01 09:00", ISO 8601 with an offset, "now"
_HASH_MAX = 64  # a content hash: SHA-256 in hex
_WORD_MAX = 30  # a kind, a list, a category or a severity: the services check them against their choices

AccountRef = Annotated[str, Field(max_length=LABEL_MAX)] | int
OrgRef = Annotated[str, Field(max_length=LABEL_MAX)] | int


class Strict(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class AccountIn(Strict):
    """A new platform account."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"kind": "manual", "name": "县融媒体中心", "credentials": {}, "check": False}]},
    )

    kind: str = Field(max_length=_WORD_MAX)
    name: str = Field(max_length=LABEL_MAX)
    credentials: dict[str, Any]
    config: dict[str, Any] = Field(default_factory=dict)
    organization: OrgRef | None = Field(None, description="Name or id; default: the one you are admin of.")
    check: bool = True  # ask the platform whether the credentials work before storing them


_VARIANTS_MAX = 8  # one per platform kind a post goes to (four today; headroom for more kinds)


class VariantIn(Strict):
    """One platform's own text; the other fields come from the post."""

    title: str | None = Field(None, max_length=services.TITLE_MAX)
    body: str | None = Field(None, description="Markdown, at most MATRIX_BODY_MAX_CHARS characters.")


Variants = Annotated[
    dict[Annotated[str, Field(max_length=_WORD_MAX)], VariantIn],
    Field(max_length=_VARIANTS_MAX, description='Per platform kind, e.g. {"weibo": {"body": "..."}}.'),
]


class PostIn(Strict):
    """A new post, optionally scheduled at once."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"title": "通知", "body": "正文", "accounts": [1]}]}
    )

    title: str = Field(max_length=services.TITLE_MAX)
    body: str = Field(description="Markdown, at most MATRIX_BODY_MAX_CHARS characters.")
    accounts: list[AccountRef] = Field(min_length=1, max_length=TARGETS_MAX)
    summary: str = Field("", max_length=SUMMARY_MAX)
    cover_url: str | None = Field(None, max_length=URL_MAX, description="An image URL, or media:<id> (POST /media).")
    variants: Variants = Field(default_factory=dict)
    at: str | None = Field(
        None, max_length=_TIME_MAX, description="Schedule too: local time '2026-12-01 09:00', ISO 8601, or 'now'."
    )


class PostEdit(Strict):
    """Fields to change; past draft the post is screened again."""

    title: str | None = Field(None, max_length=services.TITLE_MAX)
    body: str | None = Field(None, description="Markdown, at most MATRIX_BODY_MAX_CHARS characters.")
    summary: str | None = Field(None, max_length=SUMMARY_MAX)
    cover_url: str | None = Field(None, max_length=URL_MAX)
    variants: Variants | None = Field(None, description="Replaces the per-platform texts; {} removes them.")


class ScheduleIn(Strict):
    """When to publish."""

    at: str = Field(max_length=_TIME_MAX)


class ReviewIn(Strict):
    """A reviewer's decision (the reviewer is whoever is signed in)."""

    reason: str = Field("", max_length=REASON_MAX)
    category: str | None = Field(
        None, max_length=_WORD_MAX, description="On a reject of what screening passed: which harm it missed."
    )
    content_hash: str | None = Field(
        None, max_length=_HASH_MAX, description="The version hash you reviewed; 409 if the post changed."
    )


class ConfirmIn(Strict):
    """The URL an operator posted an assisted delivery at."""

    url: str = Field(max_length=URL_MAX)


class TermIn(Strict):
    """A deny- or allow-list term of an organisation."""

    term: str = Field(max_length=services.TERM_MAX)
    list: str = Field("deny", max_length=_WORD_MAX)
    category: str = Field("custom", max_length=_WORD_MAX)
    severity: str = Field("review", max_length=_WORD_MAX)


class ScreenIn(Strict):
    """A text to screen (at most MATRIX_SCREEN_MAX_CHARS characters)."""

    text: str = ""


class SignIn(Strict):
    """A name and password."""

    name: str = Field(max_length=NAME_MAX)
    password: str = Field(max_length=200)


class TokenIn(Strict):
    """A personal API token for a script."""

    name: str = Field(max_length=NAME_MAX)
    days: int | None = Field(None, ge=1, le=3650, description="Expires after this many days; default never.")


class RoleIn(Strict):
    """A role on an organisation (it covers the organisation's subtree)."""

    role: str = Field(max_length=_WORD_MAX)
    organization: OrgRef


class UserIn(Strict):
    """A new user."""

    name: str = Field(max_length=NAME_MAX)
    password: str = Field(max_length=200)
    roles: list[RoleIn] = Field(min_length=1, max_length=50)


class PasswordIn(Strict):
    """A new password."""

    password: str = Field(max_length=200)


# ------------------------------------------------------------------------------------------ routes

Actor = Annotated[Principal, Depends(current_principal)]


@app.get("/docs", include_in_schema=False)
def docs(actor: Actor) -> HTMLResponse:
    """Swagger UI for this API, from this server's own files."""
    return web.swagger_page()


@app.get("/health")
def health() -> JSONResponse:
    """Database and broker reachable? 200 if both, 503 otherwise."""
    status: dict[str, Any] = {}
    try:
        # A read that takes no write lock: a worker writing at this moment does not make the database
        # unreachable (on SQLite a plain BEGIN, not the BEGIN IMMEDIATE of every other transaction).
        with get_engine().connect() as conn:
            conn.execution_options(**READ_ONLY)
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


@app.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus metrics: this machine's counted figures and the database's (an admin, or the scrape token)."""
    if not request.scope.get("state", {}).get("metrics_scraper"):
        actor = current_principal(request)
        with session_scope() as session:
            services.require(session, actor, "metrics.view")
    try:
        depths = queue_depths(
            [
                get_settings().queue,
                status_queue(get_settings()),
                screening_queue(get_settings()),
                monitor_queue(get_monitor_settings()),
            ]
        )
        queues = [("matrix_queue_depth", "Messages waiting per queue (the broker).", ["queue"],
                   [([q], float(n)) for q, n in depths.items()])]  # fmt: skip
    except Exception:  # the broker is down: the other figures still count (and /health says so)
        queues = []
    body = exposition(lambda: database_gauges() + queues)
    return Response(content=body, media_type=METRICS_CONTENT_TYPE)


# ------------------------------------------------------------------------------------------ people


@app.post("/auth/login")
def login(body: SignIn, request: Request) -> JSONResponse:
    """Sign in: sets the session cookie and returns the CSRF secret that changing requests must echo in
    ``X-CSRF-Token``. Five failures in a row lock the user out for 15 minutes (429, saying until when)."""
    actor = services.sign_in(body.name, body.password, source=client_source(request.scope, "web"))
    with session_scope() as session:
        _, secret, csrf = services.issue_credential(session, actor, kind="session", name="web")
        me = services.whoami(session, actor)
    response = JSONResponse({"user": me, "csrf_token": csrf})
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(SESSION_ABSOLUTE.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or get_settings().cookie_secure,
    )
    return response


@app.post("/auth/logout")
def logout(actor: Actor, session: Session = Depends(db)) -> JSONResponse:
    """End this sign-in (the session or token the request came with)."""
    if actor.credential_id is not None:
        services.revoke_credential(session, actor, actor.credential_id)
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(SESSION_COOKIE)
    return response


@app.get("/auth/me")
def me(actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Who you are: name, roles on which organisations."""
    return services.whoami(session, actor)


@app.get("/auth/tokens")
def list_tokens(actor: Actor, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """Your tokens and sessions (never their secrets)."""
    return services.token_rows(session, actor)


@app.post("/auth/tokens", status_code=201)
def create_token(body: TokenIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """A personal API token, shown once: send it as ``Authorization: Bearer <token>``."""
    ttl = timedelta(days=body.days) if body.days else None
    cred, secret, _ = services.issue_credential(session, actor, kind="token", name=body.name, ttl=ttl)
    return {"id": cred.id, "name": cred.name, "token": secret, "note": "shown once: keep it now"}


@app.delete("/auth/tokens/{token_id}")
def revoke_token(token_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Revoke one of your tokens or sessions (an admin: one of a user they look after)."""
    cred = services.revoke_credential(session, actor, token_id)
    return {"id": cred.id, "revoked": True}


@app.get("/users")
def list_users(actor: Actor, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """The users an admin looks after, with their roles."""
    return services.user_rows(session, actor)


@app.post("/users", status_code=201)
def add_user(body: UserIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """A new user with roles on organisations (an admin over each)."""
    user = services.create_user(
        session, actor, body.name, body.password, [(r.role, r.organization) for r in body.roles]
    )
    return {"id": user.id, "name": user.name}


@app.post("/users/{user_id}/disable")
def disable_user(user_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Disable a user: no sign-in, and every token and session of theirs stops working."""
    user = services.disable_user(session, actor, user_id)
    return {"id": user.id, "disabled": user.disabled}


@app.post("/users/{user_id}/password")
def set_password(user_id: int, body: PasswordIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Set a password (your own, or as an admin over the user); their web sessions end."""
    user = services.set_password(session, actor, user_id, body.password)
    return {"id": user.id, "password_changed": True}


@app.post("/users/{user_id}/roles")
def grant_role(user_id: int, body: RoleIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Give a user a role on an organisation."""
    user = services.grant_role(session, actor, user_id, body.role, body.organization)
    return {"id": user.id, "roles": [f"{g.role}@{g.organization_id}" for g in user.grants]}


# Every list is paged: ``limit`` 1..LIST_MAX, ``offset`` from 0 (checked by the read models, one-line 422s).
Limit = Annotated[int, Query(description=f"At most this many rows (1-{LIST_MAX}).")]
Offset = Annotated[int, Query(description="Skip this many rows first.")]


@app.get("/audit")
def audit_log(
    actor: Actor,
    user: Annotated[str | None, Query(max_length=NAME_MAX)] = None,
    object_type: Annotated[str | None, Query(max_length=_WORD_MAX)] = None,
    object_id: int | None = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
    since: Annotated[str | None, Query(max_length=_TIME_MAX)] = None,
    until: Annotated[str | None, Query(max_length=_TIME_MAX)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    session: Session = Depends(db),
) -> list[dict[str, Any]]:
    """The audit log, newest first, filtered by user, object, action and time (admins)."""
    return services.audit_rows(
        session,
        actor,
        user=user,
        object_type=object_type,
        object_id=object_id,
        action=action,
        since=parse_local(since, allow_past=True) if since else None,
        until=parse_local(until, allow_past=True) if until else None,
        limit=limit,
        offset=offset,
    )


@app.get("/audit/verify")
def audit_verify(actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Check the audit log's hash chain: the first row that was edited, deleted or reordered (admins)."""
    services.require(session, actor, "audit.view")
    result = verify_audit(session)
    return {"ok": result.ok, "rows": result.rows, "first_bad_id": result.first_bad_id, "problem": result.problem}


# ---------------------------------------------------------------------------------------- the matrix


@app.get("/accounts")
def list_accounts(
    actor: Actor, limit: Limit = LIST_MAX, offset: Offset = 0, session: Session = Depends(db)
) -> list[dict[str, Any]]:
    """The accounts you may see, by id with their health (never their credentials)."""
    return services.account_rows(session, actor, limit=limit, offset=offset)


@app.post("/accounts", status_code=201)
def add_account(body: AccountIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Register a platform account (its credentials checked with the platform first unless ``check`` is false)."""
    if body.check:  # before the session's transaction begins (services.check_new_account)
        services.check_new_account(actor, body.kind, body.name, body.credentials, body.config)
    account = services.add_account(
        session,
        actor,
        kind=body.kind,
        name=body.name,
        credentials=body.credentials,
        config=body.config,
        organization=body.organization,
    )
    return {"id": account.id, "kind": account.kind, "name": account.name}


@app.post("/accounts/{account_id}/reauthorize")
def reauthorize(
    account_id: int, credentials: dict[str, Any], actor: Actor, check: bool = True, session: Session = Depends(db)
) -> dict[str, Any]:
    """New credentials (the JSON body); ``?check=false`` stores them without asking the platform first."""
    if check:  # before the session's transaction begins (services.check_new_account)
        services.check_new_credentials(actor, account_id, credentials)
    account = services.reauthorize_account(session, actor, account_id, credentials)
    return {"id": account.id, "status": account.status}


@app.get("/posts")
def list_posts(
    actor: Actor,
    state: Annotated[str | None, Query(max_length=_WORD_MAX)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    session: Session = Depends(db),
) -> list[dict]:
    """The posts you may see, newest first (``state`` filters)."""
    return services.post_rows(session, actor, state=state, limit=limit, offset=offset)


@app.post("/posts", status_code=201)
@body_cap(_post_cap)
def create_post(body: PostIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Create a post and send it to screening; ``at`` schedules it too."""
    due = parse_local(body.at) if body.at else None
    post = services.create_post(
        session,
        actor,
        title=body.title,
        body=body.body,
        accounts=body.accounts,
        summary=body.summary,
        cover_url=body.cover_url,
        variants=_variants(body.variants),
    )
    if due is not None:
        services.schedule_post(session, actor, post.id, due)
    session.flush()
    return services.post_summary(session, post)


def _variants(variants: dict[str, VariantIn]) -> dict[str, dict[str, str]]:
    """The per-platform texts as the services take them (fields left out stay out)."""
    return {kind: v.model_dump(exclude_none=True) for kind, v in variants.items()}


def _upload_cap(_settings: Settings) -> int:
    """An image at its largest and the form around it."""
    return services.COVER_MAX_BYTES + 64 * 1024


@app.post("/media", status_code=201)
@body_cap(_upload_cap)
def upload_media(
    actor: Actor,
    file: UploadFile = File(description="A JPEG, PNG, GIF, WebP or BMP image, at most 10 MB."),
    organization: str | None = Form(None, max_length=LABEL_MAX, description="Id or name; yours if you have one."),
    session: Session = Depends(db),
) -> dict[str, Any]:
    """Upload a cover image; give its ``cover_url`` (``media:<id>``) to a post you create or edit."""
    org_id = services.find_organization(session, organization).id if organization else None
    data = file.file.read(services.COVER_MAX_BYTES + 1)
    media = services.upload_image(session, actor, org_id, data, file.filename or "")
    return {
        "id": media.id,
        "cover_url": services.media_ref(media),
        "content_type": media.content_type,
        "size": media.size,
        "sha256": media.sha256,
        "organization_id": media.organization_id,
    }


@app.get("/media/{media_id}")
def show_media(media_id: int, actor: Actor, session: Session = Depends(db)) -> Response:
    """An uploaded image's bytes (for previews)."""
    media = services.get_media(session, actor, media_id)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=86400"}
    return Response(content=media.data, media_type=media.content_type, headers=headers)


@app.get("/posts/{post_id}")
def show_post(post_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """A post with its screening, review chain, schedule and deliveries (with their newest engagement numbers)."""
    detail = services.post_detail(session, actor, post_id)
    detail["review"] = services.chain_progress(session, services.get(session, Post, post_id))
    return detail


@app.patch("/posts/{post_id}")
@body_cap(_post_cap)
def edit_post(post_id: int, body: PostEdit, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Make a new version of a post (past draft it is screened again, and its review chain starts again)."""
    post = services.edit_post(
        session,
        actor,
        post_id,
        title=body.title,
        body=body.body,
        summary=body.summary,
        cover_url=body.cover_url,
        variants=None if body.variants is None else _variants(body.variants),
    )
    return services.post_summary(session, post)


@app.post("/posts/{post_id}/submit")
def submit_post(post_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Send a draft to screening."""
    return services.post_summary(session, services.submit_post(session, actor, post_id))


@app.post("/posts/{post_id}/schedule")
def schedule_post(post_id: int, body: ScheduleIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Schedule a post; it goes out then once its current version is approved."""
    due: datetime = parse_local(body.at)
    services.schedule_post(session, actor, post_id, due)
    return services.post_summary(session, services.get(session, Post, post_id))


@app.post("/posts/{post_id}/unschedule")
def unschedule_post(post_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Cancel the pending schedule: a scheduled post goes back to approved."""
    return services.post_summary(session, services.cancel_schedule(session, actor, post_id))


@app.delete("/posts/{post_id}")
def delete_post(post_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Delete a draft (a post past draft is rejected or retracted instead, never deleted)."""
    services.delete_draft(session, actor, post_id)
    return {"id": post_id, "deleted": True}


@app.post("/posts/{post_id}/duplicate", status_code=201)
def duplicate_post(post_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """A new draft with this post's content and accounts, yours to edit and submit."""
    copy = services.duplicate_post(session, actor, post_id)
    session.flush()
    return services.post_summary(session, copy)


@app.post("/posts/{post_id}/approve")
def approve_post(post_id: int, body: ReviewIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Approve the current step of the post's review chain (the last step approves the post)."""
    services.review(session, actor, post_id, approve=True, reason=body.reason, content_hash=body.content_hash)
    return services.post_summary(session, services.get(session, Post, post_id))


@app.post("/posts/{post_id}/reject")
def reject_post(post_id: int, body: ReviewIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Reject a post (a reason is required; the author is told)."""
    services.review(
        session,
        actor,
        post_id,
        approve=False,
        reason=body.reason,
        content_hash=body.content_hash,
        category=body.category,
    )
    return services.post_summary(session, services.get(session, Post, post_id))


@app.post("/posts/{post_id}/override")
def override_post(post_id: int, body: ReviewIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Override an automatic reject (a false positive) with a reason; it counts as the chain's first step."""
    services.override(session, actor, post_id, reason=body.reason, content_hash=body.content_hash)
    return services.post_summary(session, services.get(session, Post, post_id))


@app.post("/posts/{post_id}/retry")
def retry_post(post_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Retry only the deliveries that failed."""
    services.retry_post(session, actor, post_id)
    return services.post_summary(session, services.get(session, Post, post_id))


@app.post("/posts/{post_id}/retract")
def retract_post(post_id: int, actor: Actor) -> dict[str, Any]:
    """Retract from every platform now, or what is left (run it again); one line per delivery, and the post's
    state after (``partially_retracted`` while copies are left, retried in the background)."""
    lines = retract.retract_post(actor, post_id)
    with session_scope() as s:
        state = s.get(Post, post_id).state
    return {"post": post_id, "state": state, "deliveries": lines}


class RescreenIn(Strict):
    """Screen live posts again now, whatever their fingerprint (admins)."""

    days: int | None = Field(None, ge=1, le=3650, description="Posts published this many days back (default "
                             "MATRIX_RESCREEN_DAYS).")  # fmt: skip
    organization: str | None = Field(None, max_length=LABEL_MAX, description="Its subtree only: id or name.")


class KeepIn(Strict):
    """A reviewer keeps a flagged live post: why the new rules are wrong about it."""

    reason: str = Field(max_length=REASON_MAX)


@app.post("/rescreen")
def rescreen_now(body: RescreenIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Screen the live posts published in the last ``days`` again, in the background on the screening queue
    (new screenings first); how many were queued."""
    queued = request_rescreen(session, actor, days=body.days, org=body.organization)
    return {"queued": queued}


@app.get("/live-flags")
def live_flags(
    actor: Actor, limit: Limit = 100, offset: Offset = 0, open_only: bool = True, session: Session = Depends(db)
) -> list[dict[str, Any]]:
    """Live posts a re-screen flagged that you review, newest first, with the new evidence."""
    return flag_rows(session, actor, open_only=open_only, limit=limit, offset=offset)


@app.post("/live-flags/{flag_id}/retract")
def retract_flagged(flag_id: int, actor: Actor) -> dict[str, Any]:
    """Retract a flagged live post everywhere in one step (a reviewer of its organisation); one line per
    delivery, as ``POST /posts/ID/retract``."""
    post_id, lines = live_flags_action.retract_flagged(actor, flag_id)
    with session_scope() as s:
        state = s.get(Post, post_id).state
    return {"flag": flag_id, "post": post_id, "state": state, "deliveries": lines}


@app.post("/live-flags/{flag_id}/keep")
def keep_flagged(flag_id: int, body: KeepIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Keep a flagged live post (a reason is required): the flag is closed, the post stays live."""
    flag = keep_flag(session, actor, flag_id, reason=body.reason)
    return {"flag": flag.id, "post": flag.post_id, "state": flag.state}


@app.get("/reviews")
def review_queue(
    actor: Actor, limit: Limit = 100, offset: Offset = 0, session: Session = Depends(db)
) -> list[dict[str, Any]]:
    """Posts waiting for review that you may review, oldest first, with the screening's evidence."""
    return services.review_queue(session, actor, limit=limit, offset=offset)


@app.get("/deliveries/{delivery_id}/package")
def delivery_package(delivery_id: int, actor: Actor) -> Response:
    """The ready-to-paste ZIP of an assisted delivery."""
    data = assisted.package_for(actor, delivery_id)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="delivery-{delivery_id}.zip"'},
    )


@app.post("/deliveries/{delivery_id}/confirm")
def confirm_delivery(delivery_id: int, body: ConfirmIn, actor: Actor) -> dict[str, Any]:
    """Record the URL of an assisted delivery an operator posted by hand."""
    d = assisted.confirm_manual(actor, delivery_id, body.url)
    return {"id": d.id, "state": d.state, "remote_url": d.remote_url}


@app.post("/deliveries/{delivery_id}/removed")
def delivery_removed(delivery_id: int, actor: Actor, force: bool = False) -> dict[str, Any]:
    """An operator deleted by hand a copy without a retraction API (its post was retracted); its URL is checked
    first where it can be (still up: 409 unless ``force``)."""
    d, checked = assisted.confirm_removed(actor, delivery_id, force=force)
    return {"id": d.id, "state": d.state, "remote_url": d.remote_url, "check": checked}


@app.post("/organizations/{org_id}/terms", status_code=201)
def add_term(org_id: int, body: TermIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Add (or update) a term of an organisation's deny- or allow-list (admins of the organisation)."""
    entry, created = services.add_moderation_term(
        session, actor, org_id, body.term, list_=body.list, category=body.category, severity=body.severity
    )
    return {"term": entry.term, "list": entry.list, "category": entry.category, "severity": entry.severity,
            "created": created}  # fmt: skip


@app.get("/organizations/{org_id}/terms")
def list_terms(org_id: int, actor: Actor, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """An organisation's own deny- and allow-list terms (admins of the organisation)."""
    return services.term_rows(session, actor, org_id)


@app.get("/policies")
def list_policies(actor: Actor, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """Per organisation you set policies for: its review chain (own or inherited), policy overrides, term lists."""
    return services.policy_rows(session, actor)


@app.get("/organizations/{org_id}/review-chain")
def get_review_chain(org_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """The review chain that applies to an organisation's posts, and which organisation it is inherited from."""
    return services.review_chain_of(session, actor, org_id)


@app.put("/organizations/{org_id}/review-chain")
def put_review_chain(
    org_id: int, chain: dict[str, Any] | None, actor: Actor, session: Session = Depends(db)
) -> dict[str, Any]:
    """Set an organisation's review chain (``null``: inherit the parent's again); admins of it."""
    services.set_review_chain(session, actor, org_id, chain)
    return services.review_chain_of(session, actor, org_id)


class AliasIn(Strict):
    """Another name of an organisation (省总 for 江苏省总工会): the monitor counts a mention of it as one of the
    organisation."""

    alias: str = Field(max_length=LABEL_MAX)


@app.get("/organization-aliases")
def list_all_aliases(actor: Actor, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """The aliases of every organisation you have a role in (or below one), by organisation name."""
    return org_services.alias_rows(session, actor)


@app.get("/organizations/{org_id}/aliases")
def list_aliases(org_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """An organisation's aliases (anyone with a role in it or above it)."""
    return org_services.alias_rows(session, actor, org_id)[0]


@app.post("/organizations/{org_id}/aliases", status_code=201)
def add_alias(org_id: int, body: AliasIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Add an alias of an organisation (admins of it); 409 if it is already a name or an alias in the tree, 422
    if it is empty, too long or too short to match. Returns the organisation's aliases."""
    return org_services.add_alias(session, actor, org_id, body.alias)


@app.delete("/organizations/{org_id}/aliases")
def remove_alias(
    org_id: int,
    actor: Actor,
    alias: Annotated[str, Query(max_length=LABEL_MAX, description="The alias to remove.")],
    session: Session = Depends(db),
) -> dict[str, Any]:
    """Remove an alias of an organisation (admins of it); in the query string, as an alias may hold a ``/``.
    Returns the organisation's aliases after it."""
    return org_services.remove_alias(session, actor, org_id, alias)


@app.get("/moderation/feedback", response_class=PlainTextResponse)
def feedback_export(actor: Actor, session: Session = Depends(db)) -> str:
    """Reviewers' feedback as JSONL for ``python -m moderation.train --feedback FILE`` (admins)."""
    return "".join(line + "\n" for line in services.export_lines(session, actor))


@app.get("/moderation/proposals")
def term_proposals(actor: Actor, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """Terms reviewers overrode often: allow-list proposals for an admin to accept or dismiss."""
    return services.proposals(session, actor)


class ProposalIn(Strict):
    """An admin's decision on an allow-list proposal."""

    organization: OrgRef
    term: str = Field(max_length=services.TERM_MAX)
    accept: bool


@app.post("/moderation/proposals")
def decide_proposal(body: ProposalIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Accept a proposal (the term joins the organisation's allow-list) or dismiss it."""
    services.decide_proposal(session, actor, body.organization, body.term, accept=body.accept)
    return {"term": body.term, "accepted": body.accept}


@app.get("/notifications")
def notifications(
    actor: Actor,
    unread: bool = True,
    mark_read: bool = False,
    limit: Limit = 200,
    offset: Offset = 0,
    session: Session = Depends(db),
) -> list[dict[str, Any]]:
    """Your notifications, oldest first (a post rejected, an account needs re-authorisation, a delivery failed…):
    the newest ``limit`` after the ``offset`` newest; ``mark_read=true`` marks those returned as read."""
    return services.notification_rows(
        session, actor, unread_only=unread, mark_read=mark_read, limit=limit, offset=offset
    )


@app.post("/notifications/{notification_id}/read")
def read_notification(notification_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Mark one of your notifications read."""
    n = services.get(session, Notification, notification_id)
    if n.user_id != actor.user_id:
        raise NotFound(f"notification {notification_id} not found")
    mark_notifications_read([n])
    return {"id": n.id, "read_at": iso_local(n.read_at)}


@app.post("/screen")
@body_cap(_screen_cap)
def screen(payload: ScreenIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Screen a text with the moderation engine: ``{"text": "..."}``."""
    services.require(session, actor, "screen")
    session.commit()  # screening takes a while: hold no transaction meanwhile
    if not payload.text.strip():
        raise InvalidInput("text is empty")
    limit = get_settings().screen_max_chars  # screening time grows with the length (core.settings)
    if len(payload.text) > limit:
        raise InvalidInput(f"text is {len(payload.text)} characters; at most {limit}")
    configure_moderation()
    return moderation.screen(payload.text).to_dict()
