"""A WordPress sandbox: the REST API subset the website channel uses, with WordPress's own behaviour.

Any number of sites live under ``/wp/<site>`` (the site URL; the REST root is ``/wp/<site>/wp-json/``).
What is reproduced, because the adapter's correctness depends on it:

* Basic auth with application passwords (spaces ignored, as WordPress does); a bad password fails the
  whole request with 401 ``incorrect_password``, an unknown user with 401 ``invalid_username``;
  anonymous requests are allowed where WordPress allows them and refused (401 ``rest_cannot_create``,
  ``rest_not_logged_in``, ``rest_forbidden_status`` …) where it does not; roles matter (a contributor
  cannot publish: 403 ``rest_cannot_publish``).
* Posts: create (201, edit context), list with ``slug``/``status`` filters (``status=any`` needs an
  editing user, as in WordPress, and excludes the trash), pagination headers ``X-WP-Total`` /
  ``X-WP-TotalPages``, get, delete (trash; ``rest_already_trashed`` 410 the second time;
  ``force=true`` deletes). **Unique slugs**: a duplicate slug gets ``-2``, ``-3`` … exactly like
  ``wp_unique_post_slug``; trashing renames the slug to ``<slug>__trashed``.
* Media upload as a raw body with ``Content-Disposition`` or as multipart ``file``; the file is served
  at its ``source_url``.
* Comments list with ``X-WP-Total`` / ``X-WP-TotalPages``, ``post``, ``page``, ``per_page``, ``order``
  (``asc``/``desc``), ``orderby`` (``date``, ``date_gmt``, ``id``) and ``after`` (exclusive, compared with the
  comment's ``date`` in site time, as ``date_query`` compares ``comment_date``); a published post gains a comment
  every ``COMMENT_EVERY_S`` seconds of the sandbox clock (texts from :mod:`channels.sandbox.comments`), so
  metrics have something to collect, and ``POST /wp/_sandbox/comments`` ``{"site", "post", "comments": [{"text",
  "author"}] | "count": N}`` adds comments now.
* Every published post is an HTML page at its ``link`` (``/wp/<site>/?p=<id>``).
* WordPress error bodies ``{"code", "message", "data": {"status"}}``; injected faults use them too
  (5xx and 429 from "the proxy in front" come as HTML, as they do in real life).

Control API under ``/wp/_sandbox/``: ``comments`` (above), ``accounts`` (POST: ``{"site", "username", "app_password"?,
"role"?, "name"?}``), ``state``, ``faults``, ``clock/advance``, ``reset`` (also restores the demo
accounts); ``/wp/_sandbox/sample-cover.png`` is an image to use as a cover.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import json
import math
import re
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from channels.sandbox import comments as reader_comments
from channels.sandbox.faults import FakeClock, Fault, Faults, SandboxError, install_knobs
from channels.sandbox.media import SAMPLE_PNG

COMMENT_EVERY_S = 600  # one new comment per published post every 10 minutes of sandbox time
ADDED_COMMENT_IDS = 900_000_000  # comments added through the control API count up from here (apart from the
# generated ones, whose ids are post id * 100,000 + n)
COMMENT_ORDERBY = ("date", "date_gmt", "id")
SITE_TZ = timezone(timedelta(hours=8))  # the sites' "timezone_string" (Asia/Shanghai): ``date`` is local
POST_STATUSES = ("publish", "future", "draft", "pending", "private")
UPLOAD_TYPES = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
}
REGISTERED_META = ("mm_delivery",)  # meta keys the site registers with show_in_rest (others are ignored)

DEMO_PASSWORD = "abcd EFGH 1234 ijkl MNOP 5678"  # noqa: S105 - the sandbox's published demo login
DEMO_ACCOUNTS: list[dict[str, Any]] = [
    {
        "kind": "website",
        "name": "示范单位官网 (WordPress sandbox)",
        "credentials": {"username": "editor", "app_password": DEMO_PASSWORD},
        "config": {"base_url": "{sandbox}/wp/demo"},
    },
    {
        "kind": "website",
        "name": "新闻中心 (WordPress sandbox)",
        "credentials": {"username": "newsroom", "app_password": "wxyz QRST 9876 abcd EFGH 5432"},
        "config": {"base_url": "{sandbox}/wp/news"},
    },
]

# role -> capabilities, the subset of WordPress's defaults that these endpoints check
ROLES: dict[str, set[str]] = {
    "administrator": {"edit_posts", "publish_posts", "delete_others_posts", "upload_files", "read_private"},
    "editor": {"edit_posts", "publish_posts", "delete_others_posts", "upload_files", "read_private"},
    "author": {"edit_posts", "publish_posts", "upload_files"},
    "contributor": {"edit_posts"},
    "subscriber": set(),
}


# ------------------------------------------------------------------------------------------ state


@dataclass
class User:
    id: int
    username: str
    name: str
    role: str
    passwords: set[str] = field(default_factory=set)

    def can(self, capability: str) -> bool:
        return capability in ROLES.get(self.role, set())


@dataclass
class Post:
    id: int
    slug: str
    title: str
    content: str
    excerpt: str
    status: str
    author: int
    featured_media: int
    meta: dict[str, Any]
    created: float  # sandbox clock, seconds
    published: float | None = None
    modified: float = 0.0


@dataclass
class Media:
    id: int
    filename: str
    mime: str
    data: bytes
    author: int
    created: float


@dataclass
class AddedComment:
    id: int
    post: int
    author: str
    text: str
    at: float  # sandbox clock, seconds


@dataclass
class Site:
    name: str
    users: dict[str, User] = field(default_factory=dict)
    posts: dict[int, Post] = field(default_factory=dict)
    media: dict[int, Media] = field(default_factory=dict)
    comments: list[AddedComment] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    next_id: int = 1  # posts and attachments share one ID sequence (the wp_posts table)
    next_user_id: int = 1

    def new_id(self) -> int:
        value = self.next_id
        self.next_id += 1
        return value

    def unique_slug(self, slug: str, exclude: int | None = None) -> str:
        """``wp_unique_post_slug``: append -2, -3 … until no other post (trash excluded by rename) has it."""
        taken = {p.slug for p in self.posts.values() if p.id != exclude}
        if slug not in taken:
            return slug
        n = 2
        while f"{slug}-{n}" in taken:
            n += 1
        return f"{slug}-{n}"


class WordPressState:
    """All sites of the sandbox; every access holds one lock (the control API may run concurrently)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.sites: dict[str, Site] = {}

    def reset(self) -> None:
        """Forget every site, then register the demo accounts again."""
        with self.lock:
            self.sites.clear()
            for account in DEMO_ACCOUNTS:
                site = account["config"]["base_url"].rsplit("/", 1)[-1]
                creds = account["credentials"]
                self.add_account(site, creds["username"], creds["app_password"], "editor", account["name"])

    def site(self, name: str) -> Site:
        """The site called ``name`` (call with the lock held); an unknown one answers WordPress's 404."""
        site = self.sites.get(name)
        if site is None:
            # an unknown site is simply not a WordPress site: a plain 404
            raise WPError("rest_no_route", "No route was found matching the URL and request method.", 404)
        return site

    def add_account(self, site: str, username: str, password: str | None, role: str, name: str) -> dict:
        """Register (or update) a user with an application password; returns it, password included."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", site) or site.startswith("_"):
            raise ValueError("site must be letters, digits, '.', '_' or '-' and not start with '_'")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        password = password or _new_app_password()
        with self.lock:
            s = self.sites.setdefault(site, Site(site))
            user = s.users.get(username)
            if user is None:
                user = User(s.next_user_id, username, name or username, role)
                s.next_user_id += 1
                s.users[username] = user
            user.role, user.name = role, name or user.name
            user.passwords = {_normalize_password(password)}
            return {
                "site": site,
                "username": username,
                "user_id": user.id,
                "role": role,
                "app_password": password,
                "base_url": f"/wp/{site}",
            }

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "sites": {
                    name: {
                        "users": [{"id": u.id, "username": u.username, "role": u.role} for u in s.users.values()],
                        "posts": [
                            {
                                "id": p.id,
                                "slug": p.slug,
                                "status": p.status,
                                "title": p.title,
                                "featured_media": p.featured_media,
                                "meta": p.meta,
                                "author": p.author,
                            }
                            for p in s.posts.values()
                        ],
                        "media": [
                            {"id": m.id, "filename": m.filename, "mime": m.mime, "bytes": len(m.data)}
                            for m in s.media.values()
                        ],
                        "calls": dict(s.calls),
                    }
                    for name, s in self.sites.items()
                },
                "now": self.clock.now(),
            }


def _normalize_password(password: str) -> str:
    # WordPress strips spaces from application passwords before checking them.
    return re.sub(r"\s", "", password)


def _new_app_password() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(24))
    return " ".join(raw[i : i + 4] for i in range(0, 24, 4))


# ------------------------------------------------------------------------------------ wire format


def wp_error(code: str, message: str, status: int, **data: Any) -> JSONResponse:
    """WordPress's REST error body."""
    return JSONResponse({"code": code, "message": message, "data": {"status": status, **data}}, status_code=status)


class WPError(SandboxError):
    """Raised inside handlers; turned into :func:`wp_error` by the route wrapper."""

    def __init__(self, code: str, message: str, status: int, **data: Any) -> None:
        super().__init__(message)
        self.response = wp_error(code, message, status, **data)


_FAULT_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("rest_invalid_param", "Invalid parameter(s): status"),
    401: ("incorrect_password", "The provided password is an invalid application password."),
    403: ("rest_forbidden", "Sorry, you are not allowed to do that."),
    404: ("rest_no_route", "No route was found matching the URL and request method."),
    500: ("internal_server_error", "<p>There has been a critical error on this website.</p>"),
    503: ("wp_die", "Briefly unavailable for scheduled maintenance. Check back in a minute."),
}


def render_fault(fault: Fault) -> Response:
    """An injected error as WordPress (or the proxy in front of it) would send it."""
    status = fault.status or 500
    code = fault.extra.get("code")
    if code:
        return wp_error(code, str(fault.extra.get("message") or "Injected error."), status)
    if status in _FAULT_DEFAULTS and not fault.extra.get("proxy"):
        return wp_error(*_FAULT_DEFAULTS[status], status)
    # 429 from a WAF / rate-limit plugin, 502/504 from nginx, or any status with {"proxy": true}
    # (a basic-auth proxy's 401, a WAF's 403, PHP-FPM's bare 500): HTML, not WordPress JSON
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = (
        f"<html><head><title>{status} {phrase}</title></head><body><center><h1>{status} {phrase}"
        "</h1></center><hr><center>nginx</center></body></html>"
    )
    return HTMLResponse(body, status_code=status)


def _iso(ts: float, tz: timezone = UTC) -> str:
    # WordPress formats dates without an offset: ``date`` in site time, ``date_gmt`` in UTC.
    return datetime.fromtimestamp(ts, tz).replace(tzinfo=None, microsecond=0).isoformat()


def _site_url(request: Request, site: str) -> str:
    # root_path is where this app is mounted (``/wp`` in the combined sandbox, "" when served alone)
    url = request.url
    return f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}/{site}"


def _post_json(request: Request, site: str, post: Post, context: str = "view") -> dict[str, Any]:
    link = f"{_site_url(request, site)}/?p={post.id}"
    data: dict[str, Any] = {
        "id": post.id,
        "date": _iso(post.published or post.created, SITE_TZ),
        "date_gmt": _iso(post.published or post.created),
        "guid": {"rendered": link},
        "modified": _iso(post.modified, SITE_TZ),
        "modified_gmt": _iso(post.modified),
        "slug": post.slug,
        "status": post.status,
        "type": "post",
        "link": link,
        "title": {"rendered": html.escape(post.title, quote=False)},
        "content": {"rendered": post.content, "protected": False},
        "excerpt": {"rendered": f"<p>{html.escape(post.excerpt, quote=False)}</p>\n", "protected": False},
        "author": post.author,
        "featured_media": post.featured_media,
        "comment_status": "open",
        "ping_status": "open",
        "sticky": False,
        "template": "",
        "format": "standard",
        "meta": {key: post.meta.get(key, "") for key in REGISTERED_META},
        "categories": [1],
        "tags": [],
    }
    if context == "edit":
        data["title"]["raw"] = post.title
        data["content"]["raw"] = post.content
        data["excerpt"]["raw"] = post.excerpt
    return data


def _media_json(request: Request, site: str, media: Media) -> dict[str, Any]:
    source = f"{_site_url(request, site)}/wp-content/uploads/{media.id}/{media.filename}"
    return {
        "id": media.id,
        "date_gmt": _iso(media.created),
        "slug": media.filename.rsplit(".", 1)[0].lower(),
        "status": "inherit",
        "type": "attachment",
        "link": f"{_site_url(request, site)}/?attachment_id={media.id}",
        "title": {"rendered": html.escape(media.filename.rsplit(".", 1)[0])},
        "author": media.author,
        "media_type": "image",
        "mime_type": media.mime,
        "source_url": source,
        "media_details": {"filesize": len(media.data)},
    }


def _sanitize_slug(value: str) -> str:
    # sanitize_title_with_dashes, reduced to what matters here: lower case, dashes, no punctuation
    value = unquote(value).strip().lower()
    value = re.sub(r"[\s_.]+", "-", value)
    value = re.sub(r"[^\w-]", "", value)
    return re.sub(r"-{2,}", "-", value).strip("-")


def _text_field(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        value = value.get("raw", "")
    if not isinstance(value, str):
        raise WPError(
            "rest_invalid_param",
            f"Invalid parameter(s): {name}",
            400,
            params={name: f"{name} is not of type string,object."},
        )
    return value


def _int_param(params: dict[str, Any], name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = params.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise WPError(
            "rest_invalid_param",
            f"Invalid parameter(s): {name}",
            400,
            params={name: f"{name} is not of type integer."},
        ) from None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} ({lo} included) and {hi} ({hi} included)" if hi else f"greater than {lo - 1}"
        raise WPError(
            "rest_invalid_param",
            f"Invalid parameter(s): {name}",
            400,
            params={name: f"{name} must be {bound}."},
        )
    return value


# ---------------------------------------------------------------------------------------- the app


# ---------------------------------------------------------------------------------- requests


def _denied(user: User | None) -> int:
    return 401 if user is None else 403  # rest_authorization_required_code()


def _authenticate(request: Request, site: Site) -> User | None:
    """The user of a Basic-auth application password, ``None`` when anonymous; a bad one fails the call."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        username, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise WPError("rest_not_logged_in", "You are not currently logged in.", 401) from None
    user = site.users.get(username)
    if user is None:
        raise WPError("invalid_username", "Unknown username. Check again or try your email address.", 401)
    if _normalize_password(password) not in user.passwords:
        raise WPError("incorrect_password", "The provided password is an invalid application password.", 401)
    return user


async def _read_request(request: Request) -> tuple[dict[str, Any], bytes, FormData | None]:
    """Parameters (query and body merged, body winning: WP_REST_Request::get_params), raw body, form."""
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()  # read first: Starlette then serves form() from the cached body
    ctype = request.headers.get("content-type", "")
    form = None
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
        body = b""
    elif ctype.startswith("application/json") and body.strip():
        try:
            data = json.loads(body)
        except ValueError:
            raise WPError("rest_invalid_json", "Invalid JSON body passed.", 400) from None
        if isinstance(data, dict):
            params.update(data)
    elif ctype.startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(body.decode("utf-8", "replace")))
    return params, body, form


def _visible_post(site: Site, user: User | None, post_id: int) -> Post:
    """A post the user may read (drafts only to editors and their authors), else WordPress's error."""
    post = site.posts.get(post_id)
    if post is None:
        raise WPError("rest_post_invalid_id", "Invalid post ID.", 404)
    if post.status != "publish" and (user is None or not (user.can("read_private") or post.author == user.id)):
        raise WPError("rest_forbidden", "Sorry, you are not allowed to do that.", _denied(user))
    return post


@dataclass
class Call:
    """One REST request as a handler sees it: the site, the authenticated user and the merged parameters."""

    request: Request
    site: Site
    user: User | None
    params: dict[str, Any]
    body: bytes
    form: FormData | None


RestHandler = Callable[["WordPressSandbox", Call], Response]
Endpoint = Callable[["WordPressSandbox", Request], Awaitable[Response]]


def _endpoint(name: str) -> Callable[[RestHandler], Endpoint]:
    """Mark a method as a REST endpoint: read the request, find the site and user, count the call as
    ``name``, run the handler under the state lock, and answer a :class:`WPError` with its body."""

    def wrap(handler: RestHandler) -> Endpoint:
        @functools.wraps(handler)
        async def endpoint(self: WordPressSandbox, request: Request) -> Response:
            try:
                params, body, form = await _read_request(request)
                with self.state.lock:
                    site = self.state.site(request.path_params["site"])
                    site.calls[name] = site.calls.get(name, 0) + 1
                    user = _authenticate(request, site)
                    return handler(self, Call(request, site, user, params, body, form))
            except WPError as exc:
                return exc.response

        return endpoint

    return wrap


# ---------------------------------------------------------------------------------------- the app


class WordPressSandbox:
    """Every WordPress site of one sandbox: state, fake clock and faults, one method per endpoint."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.state = WordPressState(self.clock)
        self.state.reset()
        self.faults = Faults(render_error=render_fault)

    def routes(self) -> list[Route]:
        """Every URL the sandbox answers (the shared ``/_sandbox/`` knobs are added by :meth:`app`)."""
        rest = "/{site}/wp-json/wp/v2"
        return [
            Route("/_sandbox/accounts", self.add_account, methods=["POST"]),
            Route("/_sandbox/comments", self.add_comments, methods=["POST"]),
            Route("/_sandbox/state", self.get_state, methods=["GET"]),
            Route("/_sandbox/sample-cover.png", self.sample_cover, methods=["GET"]),
            Route(f"{rest}/users/me", self.users_me, methods=["GET"]),
            Route(f"{rest}/posts", self.create_post, methods=["POST"]),
            Route(f"{rest}/posts", self.list_posts, methods=["GET"]),
            Route(f"{rest}/posts/{{id:int}}", self.get_post, methods=["GET"]),
            Route(f"{rest}/posts/{{id:int}}", self.delete_post, methods=["DELETE"]),
            Route(f"{rest}/media", self.create_media, methods=["POST"]),
            Route(f"{rest}/media/{{id:int}}", self.get_media, methods=["GET"]),
            Route(f"{rest}/comments", self.list_comments, methods=["GET"]),
            Route("/{site}/wp-json/{rest:path}", self.no_route, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            Route("/{site}/wp-content/uploads/{id:int}/{name}", self.upload_file, methods=["GET"]),
            Route("/{site}/", self.site_page, methods=["GET"]),
        ]

    def app(self) -> Starlette:
        """The sandbox as an ASGI app, knobs and fault middleware installed."""
        app = Starlette(routes=self.routes())
        app.state.wordpress = self.state  # for in-process inspection (benchmarks)
        install_knobs(app, self.faults, self.clock, on_reset=self.state.reset)
        return app

    # -- users -------------------------------------------------------------------------------------

    @_endpoint("users/me")
    def users_me(self, call: Call) -> Response:
        """``GET wp/v2/users/me``: the authenticated user (roles and username with ``context=edit``)."""
        request, site, user, params = call.request, call.site, call.user, call.params
        if user is None:
            raise WPError("rest_not_logged_in", "You are not currently logged in.", 401)
        data = {
            "id": user.id,
            "name": user.name,
            "url": "",
            "description": "",
            "link": f"{_site_url(request, site.name)}/author/{user.username}/",
            "slug": user.username,
            "avatar_urls": {},
            "meta": [],
        }
        if params.get("context") == "edit":
            data["roles"] = [user.role]
            data["username"] = user.username
        return JSONResponse(data)

    # -- posts -------------------------------------------------------------------------------------

    @_endpoint("posts.create")
    def create_post(self, call: Call) -> Response:
        """``POST wp/v2/posts``: capabilities, validation, a unique slug for published posts → 201."""
        request, site, user, params = call.request, call.site, call.user, call.params
        if user is None or not user.can("edit_posts"):
            raise WPError(
                "rest_cannot_create", "Sorry, you are not allowed to create posts as this user.", _denied(user)
            )
        if "id" in params:
            raise WPError("rest_post_exists", "Cannot create existing post.", 400)
        status = params.get("status", "draft")
        if status not in POST_STATUSES:
            raise WPError(
                "rest_invalid_param",
                "Invalid parameter(s): status",
                400,
                params={"status": f"status is not one of {', '.join(POST_STATUSES)}."},
            )
        if status in ("publish", "future", "private") and not user.can("publish_posts"):
            raise WPError("rest_cannot_publish", "Sorry, you are not allowed to publish posts in this post type.", 403)
        title = _text_field(params.get("title"), "title")
        content = _text_field(params.get("content"), "content")
        excerpt = _text_field(params.get("excerpt"), "excerpt")
        if not (title or content or excerpt):
            raise WPError("empty_content", "Content, title, and excerpt are empty.", 400)
        featured = _int_param(params, "featured_media", 0, 0)
        if featured and featured not in site.media:
            raise WPError("rest_invalid_featured_media", "Invalid featured media ID.", 400)
        meta = params.get("meta") or {}
        if not isinstance(meta, dict):
            raise WPError(
                "rest_invalid_param",
                "Invalid parameter(s): meta",
                400,
                params={"meta": "meta is not of type object."},
            )
        now = self.state.clock.now()
        post = Post(
            id=site.new_id(),
            slug="",
            title=title,
            content=content,
            excerpt=excerpt,
            status=status,
            author=user.id,
            featured_media=featured,
            meta={k: str(v) for k, v in meta.items() if k in REGISTERED_META},
            created=now,
            modified=now,
            published=now if status == "publish" else None,
        )
        requested = _sanitize_slug(str(params.get("slug") or ""))
        if requested or status == "publish":
            # WordPress only fixes a slug for published posts (drafts keep it empty) and dedupes it
            post.slug = site.unique_slug(requested or _sanitize_slug(title) or str(post.id), post.id)
        site.posts[post.id] = post
        location = f"{_site_url(request, site.name)}/wp-json/wp/v2/posts/{post.id}"
        return JSONResponse(
            _post_json(request, site.name, post, "edit"), status_code=201, headers={"Location": location}
        )

    @_endpoint("posts.list")
    def list_posts(self, call: Call) -> Response:
        """``GET wp/v2/posts``: ``slug``/``status`` filters, newest first, ``X-WP-Total`` headers."""
        request, site, user, params = call.request, call.site, call.user, call.params
        statuses = [s for s in str(params.get("status", "publish")).split(",") if s]
        for status in statuses:
            if status not in (*POST_STATUSES, "any", "trash"):
                raise WPError(
                    "rest_invalid_param",
                    "Invalid parameter(s): status",
                    400,
                    params={"status": f"status[0] is not one of {', '.join(POST_STATUSES)}, trash, any."},
                )
        if statuses != ["publish"] and (user is None or not user.can("edit_posts")):
            raise WPError("rest_forbidden_status", "Status is forbidden.", _denied(user))
        per_page = _int_param(params, "per_page", 10, 1, 100)
        page = _int_param(params, "page", 1, 1)
        slugs = {_sanitize_slug(s) for s in str(params.get("slug", "")).split(",") if s.strip()}
        posts = [p for p in site.posts.values() if _status_matches(p.status, statuses)]
        if slugs:
            posts = [p for p in posts if p.slug in slugs]
        if user is not None and not user.can("read_private"):
            # authors and contributors see their own non-public posts only
            posts = [p for p in posts if p.status == "publish" or p.author == user.id]
        posts.sort(key=lambda p: (p.published or p.created, p.id), reverse=True)
        total = len(posts)
        pages = math.ceil(total / per_page)
        if page > 1 and page > pages:
            raise WPError(
                "rest_post_invalid_page_number",
                "The page number requested is larger than the number of pages available.",
                400,
            )
        context = "edit" if params.get("context") == "edit" and user is not None else "view"
        chunk = posts[(page - 1) * per_page : page * per_page]
        return JSONResponse(
            [_post_json(request, site.name, p, context) for p in chunk],
            headers={"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)},
        )

    @_endpoint("posts.get")
    def get_post(self, call: Call) -> Response:
        """``GET wp/v2/posts/<id>``: one post the user may read."""
        request, site, user, params = call.request, call.site, call.user, call.params
        post = _visible_post(site, user, request.path_params["id"])
        context = "edit" if params.get("context") == "edit" and user is not None else "view"
        return JSONResponse(_post_json(request, site.name, post, context))

    @_endpoint("posts.delete")
    def delete_post(self, call: Call) -> Response:
        """``DELETE wp/v2/posts/<id>``: to the trash (410 the second time); ``force=true`` deletes."""
        request, site, user, params = call.request, call.site, call.user, call.params
        post = site.posts.get(request.path_params["id"])
        if post is None:
            raise WPError("rest_post_invalid_id", "Invalid post ID.", 404)
        if user is None or not (user.can("delete_others_posts") or (post.author == user.id and user.can("edit_posts"))):
            raise WPError("rest_cannot_delete", "Sorry, you are not allowed to delete this post.", _denied(user))
        force = str(params.get("force", "")).lower() in ("1", "true")
        if force:
            previous = _post_json(request, site.name, post, "edit")
            del site.posts[post.id]
            return JSONResponse({"deleted": True, "previous": previous})
        if post.status == "trash":
            raise WPError("rest_already_trashed", "The post has already been deleted.", 410)
        # wp_trash_post: remember the status, free the slug for new posts
        post.meta["_wp_trash_meta_status"] = post.status
        post.status = "trash"
        post.slug = f"{post.slug}__trashed" if post.slug else post.slug
        post.modified = self.state.clock.now()
        return JSONResponse(_post_json(request, site.name, post, "edit"))

    # -- media -------------------------------------------------------------------------------------

    @_endpoint("media.create")
    def create_media(self, call: Call) -> Response:
        """``POST wp/v2/media``: a raw body with Content-Disposition or multipart ``file`` → 201."""
        request, site, user, body, form = call.request, call.site, call.user, call.body, call.form
        if user is None or not user.can("upload_files"):
            raise WPError(
                "rest_cannot_create", "Sorry, you are not allowed to upload media on this site.", _denied(user)
            )
        if form is not None:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise WPError("rest_upload_no_data", "No data supplied.", 400)
            filename, data = upload.filename or "", upload.file.read()
        else:
            if not body:
                raise WPError("rest_upload_no_data", "No data supplied.", 400)
            disposition = request.headers.get("content-disposition", "")
            match = re.search(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)\"?", disposition, re.I)
            if not match:
                raise WPError("rest_upload_no_content_disposition", "No Content-Disposition supplied.", 400)
            filename, data = unquote(match.group(1)), body
        if not data:
            raise WPError("rest_upload_no_data", "No data supplied.", 400)
        filename = re.sub(r"[^\w.-]", "-", filename.rsplit("/", 1)[-1]) or "upload"
        # like wp_check_filetype: the extension decides the type, not the Content-Type header
        ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if ext not in UPLOAD_TYPES:
            # WordPress really answers 500 here (wp_handle_sideload's error): not a transient failure
            raise WPError("rest_upload_sideload_error", "Sorry, you are not allowed to upload this file type.", 500)
        media = Media(site.new_id(), filename, UPLOAD_TYPES[ext], data, user.id, self.state.clock.now())
        site.media[media.id] = media
        return JSONResponse(_media_json(request, site.name, media), status_code=201)

    @_endpoint("media.get")
    def get_media(self, call: Call) -> Response:
        """``GET wp/v2/media/<id>``: one attachment."""
        request, site = call.request, call.site
        media = site.media.get(request.path_params["id"])
        if media is None:
            raise WPError("rest_post_invalid_id", "Invalid post ID.", 404)
        return JSONResponse(_media_json(request, site.name, media))

    # -- comments ----------------------------------------------------------------------------------

    @_endpoint("comments.list")
    def list_comments(self, call: Call) -> Response:
        """``GET wp/v2/comments``: generated and added comments of published posts, filtered, ordered, paged."""
        request, site, params = call.request, call.site, call.params
        per_page = _int_param(params, "per_page", 10, 1, 100)
        page = _int_param(params, "page", 1, 1)
        order = str(params.get("order", "desc"))
        orderby = str(params.get("orderby", "date_gmt"))
        if order not in ("asc", "desc") or orderby not in COMMENT_ORDERBY:
            name = "order" if order not in ("asc", "desc") else "orderby"
            raise WPError("rest_invalid_param", f"Invalid parameter(s): {name}", 400)
        after = None
        if params.get("after"):
            try:
                after = datetime.fromisoformat(str(params["after"])).replace(tzinfo=None)
            except ValueError:
                raise WPError(
                    "rest_invalid_param", "Invalid parameter(s): after", 400, params={"after": "Invalid date."}
                ) from None
        wanted = {int(x) for x in str(params.get("post", "")).split(",") if x.strip().isdigit()}
        now = self.state.clock.now()
        rows: list[tuple[float, int, int, str, str]] = []  # (at, id, post, author, text)
        for post in site.posts.values():
            if (wanted and post.id not in wanted) or post.status != "publish" or post.published is None:
                continue  # comments of trashed or unpublished posts are not listed
            for n in range(int((now - post.published) // COMMENT_EVERY_S)):
                sample = reader_comments.take(1, post.id + n)[0]
                at = post.published + (n + 1) * COMMENT_EVERY_S
                rows.append((at, post.id * 100_000 + n + 1, post.id, sample.author, sample.text))
        for c in site.comments:
            post = site.posts.get(c.post)
            if (wanted and c.post not in wanted) or post is None or post.status != "publish":
                continue
            rows.append((c.at, c.id, c.post, c.author, c.text))
        comments = [self._comment_json(request, site.name, *row) for row in rows]
        if after is not None:
            # date_query's default column is comment_date (site time), and "after" is exclusive
            comments = [c for c in comments if datetime.fromisoformat(c["date"]) > after]
        key = {"date": "date_gmt", "date_gmt": "date_gmt", "id": "id"}[orderby]
        comments.sort(key=lambda c: (c[key], c["id"]), reverse=order == "desc")
        total = len(comments)
        pages = math.ceil(total / per_page)
        if page > 1 and page > pages:
            raise WPError(
                "rest_comment_invalid_page_number",
                "The page number requested is larger than the number of pages available.",
                400,
            )
        return JSONResponse(
            comments[(page - 1) * per_page : page * per_page],
            headers={"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)},
        )

    @staticmethod
    def _comment_json(
        request: Request, site: str, at: float, comment_id: int, post_id: int, author: str, text: str
    ) -> dict[str, Any]:
        return {
            "id": comment_id,
            "post": post_id,
            "parent": 0,
            "author": 0,
            "author_name": author,
            "author_url": "",
            "date": _iso(at, SITE_TZ),
            "date_gmt": _iso(at),
            "content": {"rendered": f"<p>{html.escape(text, quote=False)}</p>\n"},
            "link": f"{_site_url(request, site)}/?p={post_id}#comment-{comment_id}",
            "status": "approved",
            "type": "comment",
        }

    async def add_comments(self, request: Request) -> Response:
        """``POST /_sandbox/comments``: readers comment on a published post now (texts given, or ``count``)."""
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise SandboxError("body must be a JSON object")
            with self.state.lock:
                site = self.state.sites.get(str(data.get("site", "")))
                post = site.posts.get(int(data.get("post", 0))) if site else None
                if site is None or post is None or post.status != "publish":
                    return JSONResponse({"error": "no such published post on that site"}, status_code=404)
                added = []
                for sample in reader_comments.from_body(data, start=len(site.comments)):
                    c = AddedComment(
                        ADDED_COMMENT_IDS + len(site.comments) + 1,
                        post.id,
                        sample.author,
                        sample.text,
                        self.state.clock.now(),
                    )
                    site.comments.append(c)
                    added.append(self._comment_json(request, site.name, c.at, c.id, post.id, c.author, c.text))
        except (SandboxError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad comments: {exc}"}, status_code=400)
        return JSONResponse(added, status_code=201)

    @_endpoint("no_route")
    def no_route(self, call: Call) -> Response:
        """Any other ``wp-json`` path: ``rest_no_route`` 404, as WordPress answers."""
        raise WPError("rest_no_route", "No route was found matching the URL and request method.", 404)

    # -- the public site ---------------------------------------------------------------------------

    async def site_page(self, request: Request) -> Response:
        """``GET /<site>/``: the site's front page, or a published post with ``?p=<id>``."""
        with self.state.lock:
            site = self.state.sites.get(request.path_params["site"])
            if site is None:
                return HTMLResponse(_page("Not Found", "<p>No such site.</p>"), status_code=404)
            pid = request.query_params.get("p", "")
            if pid:
                post = site.posts.get(int(pid)) if pid.isdigit() else None
                if post is None or post.status != "publish":
                    return HTMLResponse(_page("Page not found", "<p>Nothing was found.</p>"), status_code=404)
                cover = ""
                if post.featured_media in site.media:
                    src = _media_json(request, site.name, site.media[post.featured_media])["source_url"]
                    cover = f'<p><img class="wp-post-image" src="{html.escape(src)}" alt=""></p>'
                body = (
                    f'<article id="post-{post.id}" data-slug="{html.escape(post.slug)}">'
                    f"<h1>{html.escape(post.title)}</h1>{cover}{post.content}</article>"
                )
                return HTMLResponse(_page(post.title, body))
            items = "".join(
                f'<li><a href="?p={p.id}">{html.escape(p.title)}</a></li>'
                for p in sorted(site.posts.values(), key=lambda p: -p.id)
                if p.status == "publish"
            )
            return HTMLResponse(_page(site.name, f"<h1>{html.escape(site.name)}</h1><ul>{items}</ul>"))

    async def upload_file(self, request: Request) -> Response:
        """``GET /<site>/wp-content/uploads/<id>/<name>``: an uploaded file at its ``source_url``."""
        with self.state.lock:
            site = self.state.sites.get(request.path_params["site"])
            media = site.media.get(request.path_params["id"]) if site else None
            if media is None or media.filename != request.path_params["name"]:
                return HTMLResponse(_page("Not Found", ""), status_code=404)
            return Response(media.data, media_type=media.mime)

    # -- control API -------------------------------------------------------------------------------

    async def add_account(self, request: Request) -> Response:
        """``POST /_sandbox/accounts``: register (or update) a user with an application password."""
        try:
            data = await request.json()
            account = self.state.add_account(
                str(data["site"]),
                str(data["username"]),
                data.get("app_password"),
                str(data.get("role", "editor")),
                str(data.get("name", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad account: {exc}"}, status_code=400)
        return JSONResponse(account, status_code=201)

    async def get_state(self, request: Request) -> Response:
        """``GET /_sandbox/state``: every site with its users, posts, media and call counts."""
        return JSONResponse(self.state.snapshot())

    async def sample_cover(self, request: Request) -> Response:
        """``GET /_sandbox/sample-cover.png``: an image to use as a cover."""
        return Response(SAMPLE_PNG, media_type="image/png")


def create_app() -> Starlette:
    """The WordPress sandbox as an ASGI app (mounted at ``/wp`` by :func:`channels.sandbox.create_app`)."""
    return WordPressSandbox().app()


def _status_matches(status: str, wanted: list[str]) -> bool:
    if "any" in wanted and status not in ("trash", "auto-draft"):
        return True  # 'any' excludes statuses hidden from search, as WP_Query does
    return status in wanted


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )
