"""Who is calling the HTTP API: a pure ASGI middleware in front of every route, FastAPI's own included.

Anonymous requests reach only :data:`PUBLIC` (``/health`` and signing in); everything else, ``/docs`` and
``/openapi.json`` too, answers 401 with one line. A request identifies itself with ``Authorization: Bearer
<token>`` (a personal API token: scripts, the CLI) or the ``mm_session`` cookie (the web). A cookie is an
ambient credential, so a request that changes something with it must also carry the session's CSRF secret in
``X-CSRF-Token`` (403 otherwise); a bearer token cannot be sent by another site, so it needs none.

The principal found is put in ``scope["state"]["principal"]``, where :func:`current_principal` (a FastAPI
dependency) reads it: each route passes it to the services, which decide what it may do.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import quote

import anyio
from fastapi import Request
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Receive, Scope, Send

from core.db import BUSY_REASON, BUSY_RETRY_AFTER_S, is_database_busy, session_scope
from core.errors import Unauthenticated
from core.settings import get_settings
from publisher import services
from publisher.services import Principal

SESSION_COOKIE = "mm_session"
CSRF_COOKIE = "mm_csrf"  # the web pages' copy of the session's CSRF secret, which their script sends back
CSRF_HEADER = "x-csrf-token"
PUBLIC = frozenset(
    {("GET", "/health"), ("HEAD", "/health"), ("POST", "/auth/login"), ("GET", "/login"), ("POST", "/login")}
)
PUBLIC_PREFIXES = ("/static/",)  # the pages' stylesheets, scripts and vendored libraries: nothing of anyone's


def _is_page(scope: Scope) -> bool:
    """A browser asking for a page (sent to the sign-in form rather than answered 401)."""
    path = scope["path"]
    return scope["method"] in ("GET", "HEAD") and (path == "/" or path.startswith("/ui/"))


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie") or ""
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def client_source(scope: Scope, via: str = "api") -> str:
    """``api 10.0.0.5``: where a request came from, for the audit log."""
    client = scope.get("client")
    return f"{via} {client[0]}" if client else via


def _resolve(scope: Scope) -> Principal:
    authorization = _header(scope, b"authorization")
    cookie = _cookie(scope, SESSION_COOKIE)
    with session_scope() as session:
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("use 'Authorization: Bearer <token>'")
            return services.authenticate(session, token.strip(), source=client_source(scope), kind="token")
        if cookie:
            actor = services.authenticate(session, cookie, source=client_source(scope, "web"), kind="session")
            if scope["method"] not in _SAFE_METHODS and not services.csrf_ok(
                session, actor, _header(scope, CSRF_HEADER.encode())
            ):
                raise CsrfMissing("this request needs the X-CSRF-Token header of your sign-in")
            return actor
    raise Unauthenticated("sign in first: POST /auth/login, or send 'Authorization: Bearer <token>'")


class CsrfMissing(Exception):
    """A cookie-signed request that changes something came without its CSRF secret."""


class RequireIdentity:
    """Answer 401 (403 for a missing CSRF secret) before any route runs, unless the request is public or
    identifies a user; otherwise put the :class:`Principal` in the request's state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"].rstrip("/") or "/") in PUBLIC:
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD") and scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics" and _is_scraper(scope):
            scope.setdefault("state", {})["metrics_scraper"] = True  # the route serves it without a person
            await self.app(scope, receive, send)
            return
        try:
            # the database lookup in a worker thread: the event loop keeps serving other requests meanwhile
            actor = await anyio.to_thread.run_sync(_resolve, scope)
        except Unauthenticated as exc:
            if _is_page(scope):
                await _redirect(send, "/login?next=" + quote(scope["path"]))
                return
            await _answer(send, exc.status_code, str(exc), {"www-authenticate": "Bearer"})
            return
        except CsrfMissing as exc:
            await _answer(send, 403, str(exc), {})
            return
        except OperationalError as exc:  # the sign-in lookup waited in vain for a busy writer: 503, not 500
            if not is_database_busy(exc):
                raise
            await _answer(send, 503, BUSY_REASON, {"retry-after": str(BUSY_RETRY_AFTER_S)})
            return
        scope.setdefault("state", {})["principal"] = actor
        await self.app(scope, receive, send)


def _is_scraper(scope: Scope) -> bool:
    """Whether a request carries the configured metrics token (a scrape by Prometheus, not a person)."""
    token = get_settings().metrics_token
    if len(token) < 32:  # unset, or too short to be a secret: nobody is let in by it
        return False
    given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    raw: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303, "headers": [(b"location", location.encode()),
                (b"content-length", b"0")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})


def current_principal(request: Request) -> Principal:
    """The FastAPI dependency every non-public route takes: who is acting (set by :class:`RequireIdentity`)."""
    actor: Any = getattr(request.state, "principal", None)
    if actor is None:  # a public route asked for it: only sign-in, which makes its own
        raise Unauthenticated("sign in first")
    return actor
