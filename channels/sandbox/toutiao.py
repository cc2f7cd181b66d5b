"""Toutiao sandbox: a creator console (``mp.toutiao.com``) driven by session cookies, in memory.

Mounted under ``/toutiao``. What it reproduces:

- sessions (the ``sessionid`` cookie) registered through the control API, expiring on the fake clock or
  expired by a knob; a request without a live session gets ``{"code"/"err_no": 1001, "message": "请先登录"}``;
- every answer is HTTP 200 with the outcome in the body: ``err_no`` on the article endpoints, ``code`` on
  the others (as the real console does);
- ``POST /spice/image`` (the editor's image upload; 7020 for a file that is not an image) and the stored
  images at ``/img/<uri>``; ``/static/sample.png`` stands in for an image hosted elsewhere;
- ``POST /mp/agw/article/publish`` (the editor's form): title of 5–30 characters and every image uploaded
  first (7050), banned words of
  the account (7051), a daily article quota on the fake clock, reset at midnight Asia/Shanghai (7052), the
  same title and body again within a day (7053); each article then sits in review for ``review_s``
  seconds of the fake clock and ends published (or rejected, per account knob);
- ``GET /mp/agw/article/list``, ``POST /mp/agw/article/delete`` (7004 when unknown),
  ``GET /mp/agw/statistic/item_stat`` (reads, diggs, comments and shares growing with the fake clock once
  published), ``GET /mp/agw/media/get_media_info``;
- published articles as HTML pages at ``/item/<pgc_id>/``;
- control API under ``/_sandbox/``: ``POST accounts``, ``POST sessions/expire``, ``GET state`` and the
  shared knobs (faults with ``code``/``err_no``, clock, reset).
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from channels.sandbox.faults import FakeClock, Fault, Faults, install_knobs
from channels.sandbox.media import GIF, JPEG, PNG, SAMPLE_PNG, WEBP, image_sources, image_type, png_size

DAY = 86_400.0
SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_SESSION_LIFETIME_S = 30 * DAY
DEFAULT_REVIEW_S = 60.0
UPLOAD_TYPES = (PNG, JPEG, GIF, WEBP)  # what the editor's image upload takes (others: 7020)

MESSAGES: dict[int, str] = {
    -1: "系统繁忙，请稍后再试",
    1001: "请先登录",
    1002: "账号状态异常",
    1003: "操作过于频繁，请稍后再试",
    7004: "文章不存在",
    7020: "图片格式不支持",
    7050: "保存失败，标题需为5-30个字",
    7051: "内容含有违规信息，请修改后重新提交",
    7052: "今日发文次数已达上限",
    7053: "请勿重复发布相同内容",
}

DEMO_ACCOUNTS: list[dict[str, Any]] = [
    {
        "kind": "toutiao",
        "name": "Demo 头条号 (console session)",
        "credentials": {"sessionid": "demo-toutiao-session-1", "expires_at": "2099-01-01T00:00:00+00:00"},
        "config": {"base_url": "{sandbox}/toutiao", "mode": "session"},
    },
    {
        "kind": "toutiao",
        "name": "Demo 头条号 (assisted)",
        "credentials": {},
        "config": {"mode": "manual", "platform": "头条号"},
    },
]


class ConsoleError(Exception):
    """One console error answer (HTTP 200 with a code in the body)."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or MESSAGES.get(code, "error"))
        self.code = code
        self.message = message or MESSAGES.get(code, "error")


@dataclass
class Account:
    """A 头条号 with one logged-in console session."""

    user_id: str
    sessionid: str
    screen_name: str
    session_expires_at: float
    review_s: float = DEFAULT_REVIEW_S
    daily_limit: int | None = None
    reject_review: bool = False
    reject_reason: str = "内容不符合平台规范"
    banned_words: list[str] = field(default_factory=list)
    frozen: bool = False


@dataclass
class ArticleRecord:
    """A submitted article; its review state and engagement follow the fake clock."""

    pgc_id: str
    user_id: str
    title: str
    title_id: str
    content: str
    covers: str
    created_at: float
    review_ends_at: float
    rejected: bool = False
    reason: str = ""
    deleted: bool = False
    form: dict[str, str] = field(default_factory=dict)


class ToutiaoState:
    """All of the sandbox's data behind one lock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything and load the demo session again."""
        with self.lock:
            self.accounts: dict[str, Account] = {}
            self.articles: dict[str, ArticleRecord] = {}
            self.images: dict[str, tuple[bytes, str]] = {}  # uri -> (bytes, content type)
            self.calls: dict[str, int] = {}
            self.last_id = 7_300_000_000_000_000_000
            for demo in DEMO_ACCOUNTS:
                sessionid = demo["credentials"].get("sessionid")
                if sessionid:
                    self._add({"sessionid": sessionid, "screen_name": demo["name"], "expires_in": 3650 * DAY})

    def _add(self, data: dict[str, Any]) -> Account:
        user_id = str(data.get("user_id") or 3_800_000_000 + len(self.accounts))
        limit = data.get("daily_limit")
        account = Account(
            user_id=user_id,
            sessionid=str(data.get("sessionid") or secrets.token_hex(16)),
            screen_name=str(data.get("screen_name") or f"头条号{user_id}"),
            session_expires_at=self.clock.now() + float(data.get("expires_in", DEFAULT_SESSION_LIFETIME_S)),
            review_s=float(data.get("review_s", DEFAULT_REVIEW_S)),
            daily_limit=int(limit) if limit is not None else None,
            reject_review=bool(data.get("reject_review", False)),
            reject_reason=str(data.get("reject_reason") or "内容不符合平台规范"),
            banned_words=[str(w) for w in data.get("banned_words") or []],
            frozen=bool(data.get("frozen", False)),
        )
        self.accounts[user_id] = account
        return account

    def add(self, data: dict[str, Any]) -> Account:
        """Register (or replace) an account and its session."""
        with self.lock:
            return self._add(data)

    def count_call(self, name: str) -> None:
        """Count one call of an endpoint (``GET /_sandbox/state`` shows the counts)."""
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def session(self, request: Request) -> Account:
        """The account of the request's live session, or 1001 (not logged in) / 1002 (frozen)."""
        sessionid = request.cookies.get("sessionid")
        with self.lock:
            for account in self.accounts.values():
                if sessionid and account.sessionid == sessionid:
                    if self.clock.now() >= account.session_expires_at:
                        raise ConsoleError(1001)
                    if account.frozen:
                        raise ConsoleError(1002)
                    return account
        raise ConsoleError(1001)

    def state_of(self, article: ArticleRecord) -> int:
        """0 review, 1 published, 2 rejected, 3 deleted (the adapter's reading of the console's list)."""
        if article.deleted:
            return 3
        if self.clock.now() < article.review_ends_at:
            return 0
        return 2 if article.rejected else 1

    def engagement(self, article: ArticleRecord) -> dict[str, int]:
        """Reads and reactions since the article went live, seeded per article."""
        if self.state_of(article) != 1:
            return {"read_count": 0, "digg_count": 0, "comment_count": 0, "share_count": 0}
        minutes = max(0.0, (self.clock.now() - article.review_ends_at) / 60.0)
        seed = hashlib.sha256(article.pgc_id.encode()).digest()
        reads = int(minutes * (1 + seed[0] / 255 * 9))
        return {
            "read_count": reads,
            "digg_count": int(reads * (0.02 + seed[1] / 255 * 0.03)),
            "comment_count": int(reads * (0.005 + seed[2] / 255 * 0.01)),
            "share_count": int(reads * (0.002 + seed[3] / 255 * 0.005)),
        }

    def item_json(self, article: ArticleRecord, web_root: str) -> dict[str, Any]:
        """One row of the console's article list."""
        state = self.state_of(article)
        return {
            "pgc_id": article.pgc_id,
            "title": article.title,
            "title_id": article.title_id,
            "status": state,
            "status_desc": ["审核中", "已发布", "未通过审核", "已删除"][state],
            "reason": article.reason if state == 2 else "",
            "create_time": int(article.created_at),
            "article_url": f"{web_root}/item/{article.pgc_id}/" if state == 1 else "",
            **self.engagement(article),
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything, for ``GET /_sandbox/state``."""
        with self.lock:
            return {
                "now": self.clock.now(),
                "accounts": [asdict(a) for a in self.accounts.values()],
                "articles": [
                    {**asdict(a), "state": self.state_of(a), **self.engagement(a)} for a in self.articles.values()
                ],
                "calls": dict(self.calls),
            }


def _shanghai_day_start(epoch: float) -> float:
    local = datetime.fromtimestamp(epoch, UTC).astimezone(SHANGHAI)
    return datetime.combine(local.date(), datetime.min.time(), SHANGHAI).timestamp()


def sandbox_root(request: Request) -> str:
    """Where this sandbox is mounted, as a URL (``request.base_url`` stops at the outermost app)."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}".rstrip("/")


def render_fault(fault: Fault) -> Response:
    """An injected fault as the console answers: HTTP 200 with the code in the body (or a bare status)."""
    code = fault.extra.get("err_no", fault.extra.get("code"))
    if code is None and fault.status is not None:
        return JSONResponse({"message": f"injected HTTP {fault.status}"}, status_code=fault.status)
    code = int(code if code is not None else -1)
    key = "err_no" if "article" in fault.path else "code"
    return JSONResponse({key: code, "message": str(fault.extra.get("message") or MESSAGES.get(code, "error"))})


def _ok(key: str, data: Any) -> JSONResponse:
    return JSONResponse({key: 0, "message": "success", "data": data})


def _fail(key: str, exc: ConsoleError) -> JSONResponse:
    return JSONResponse({key: exc.code, "message": exc.message, "data": {}})


async def _control_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return {}


# ---------------------------------------------------------------------------------------- the app

Endpoint = Callable[["ToutiaoSandbox", Request], Awaitable[Response]]


def _console(name: str, key: str) -> Callable[[Endpoint], Endpoint]:
    """Mark a method as a console endpoint: count its calls as ``name``, answer a ConsoleError as
    HTTP 200 with the code under ``key`` (``err_no`` on the article endpoints, ``code`` on the others)."""

    def wrap(method: Endpoint) -> Endpoint:
        @functools.wraps(method)
        async def endpoint(self: ToutiaoSandbox, request: Request) -> Response:
            self.state.count_call(name)
            try:
                return await method(self, request)
            except ConsoleError as exc:
                return _fail(key, exc)

        return endpoint

    return wrap


class ToutiaoSandbox:
    """One Toutiao console sandbox: state, fake clock and faults, one method per endpoint (:meth:`routes`)."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.state = ToutiaoState(self.clock)
        self.faults = Faults(render_error=render_fault)

    def routes(self) -> list[Route]:
        """Every URL the sandbox answers (the shared ``/_sandbox/`` knobs are added by :meth:`app`)."""
        return [
            Route("/_sandbox/accounts", self.control_accounts, methods=["POST"]),
            Route("/_sandbox/sessions/expire", self.control_expire, methods=["POST"]),
            Route("/_sandbox/state", self.control_state, methods=["GET"]),
            Route("/mp/agw/media/get_media_info", self.media_info, methods=["GET"]),
            Route("/mp/agw/article/publish", self.publish, methods=["POST"]),
            Route("/mp/agw/article/list", self.article_list, methods=["GET"]),
            Route("/spice/image", self.upload_image, methods=["POST"]),
            Route("/img/{uri:path}", self.image, methods=["GET"]),
            Route("/static/sample.png", self.sample, methods=["GET"]),
            Route("/mp/agw/article/delete", self.delete, methods=["POST"]),
            Route("/mp/agw/statistic/item_stat", self.item_stat, methods=["GET"]),
            Route("/item/{pgc_id}/", self.item_page, methods=["GET"]),
        ]

    def app(self) -> Starlette:
        """The sandbox as an ASGI app, knobs and fault middleware installed."""
        app = Starlette(routes=self.routes())
        install_knobs(app, self.faults, self.clock, on_reset=self.state.reset)
        app.state.toutiao = self.state  # for in-process inspection
        return app

    # -- the console API ----------------------------------------------------------------------------

    @_console("media_info", "code")
    async def media_info(self, request: Request) -> Response:
        """``GET /mp/agw/media/get_media_info``: who the session belongs to."""
        account = self.state.session(request)
        return _ok("code", {"user": {"id": int(account.user_id), "screen_name": account.screen_name}})

    @_console("publish", "err_no")
    async def publish(self, request: Request) -> Response:
        """``POST /mp/agw/article/publish``: the editor's form; checks, quota, then review on the fake clock."""
        account = self.state.session(request)
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        title = form.get("title", "").strip()
        content = form.get("content", "")
        if not 5 <= len(title) <= 30 or not content.strip():
            raise ConsoleError(7050)
        own_images = f"{sandbox_root(request)}/img/"
        with self.state.lock:
            known = set(self.state.images)
        if any(not src.startswith(own_images) for src in image_sources(content)):
            raise ConsoleError(7050, "保存失败，正文图片需先上传")
        try:
            covers = json.loads(form.get("pgc_feed_covers") or "[]")
        except ValueError:
            raise ConsoleError(7050, "保存失败，封面格式错误") from None
        if any(str(c.get("uri")) not in known for c in covers if isinstance(c, dict)):
            raise ConsoleError(7050, "保存失败，封面需先上传")
        if any(word in title or word in content for word in account.banned_words):
            raise ConsoleError(7051)
        with self.state.lock:
            now = self.clock.now()
            mine = [a for a in self.state.articles.values() if a.user_id == account.user_id]
            today = [a for a in mine if a.created_at >= _shanghai_day_start(now)]
            if account.daily_limit is not None and len(today) >= account.daily_limit:
                raise ConsoleError(7052)
            if any(
                a.title == title and a.content == content and not a.deleted and now - a.created_at < DAY for a in mine
            ):
                raise ConsoleError(7053)
            self.state.last_id += 1
            article = ArticleRecord(
                pgc_id=str(self.state.last_id),
                user_id=account.user_id,
                title=title,
                title_id=form.get("title_id", ""),
                content=content,
                covers=form.get("pgc_feed_covers", "[]"),
                created_at=now,
                review_ends_at=now + account.review_s,
                rejected=account.reject_review,
                reason=account.reject_reason if account.reject_review else "",
                form=form,
            )
            self.state.articles[article.pgc_id] = article
        return _ok("err_no", {"pgc_id": article.pgc_id})

    @_console("image", "code")
    async def upload_image(self, request: Request) -> Response:
        """``POST /spice/image``: the editor's image upload (multipart ``image``; 7020 if not an image)."""
        self.state.session(request)
        form = await request.form()
        upload = form.get("image")
        data = await upload.read() if hasattr(upload, "read") else b""
        kind = image_type(data)
        if kind not in UPLOAD_TYPES:
            raise ConsoleError(7020)
        uri = f"tos-cn-i-sandbox/{hashlib.sha1(data, usedforsecurity=False).hexdigest()}"
        width, height = png_size(data)
        with self.state.lock:
            self.state.images[uri] = (data, kind)
        return _ok(
            "code",
            {
                "image_uri": uri,
                "image_url": f"{sandbox_root(request)}/img/{uri}",
                "image_width": width,
                "image_height": height,
            },
        )

    @_console("list", "err_no")
    async def article_list(self, request: Request) -> Response:
        """``GET /mp/agw/article/list``: the account's articles, newest first, with state and numbers."""
        account = self.state.session(request)
        size = min(50, max(1, int(request.query_params.get("size") or 20)))
        page = max(1, int(request.query_params.get("page") or 1))
        with self.state.lock:
            mine = sorted(
                (a for a in self.state.articles.values() if a.user_id == account.user_id),
                key=lambda a: (a.created_at, a.pgc_id),
                reverse=True,
            )
            chunk = mine[(page - 1) * size : page * size]
            items = [self.state.item_json(a, sandbox_root(request)) for a in chunk]
        return _ok("err_no", {"list": items, "total": len(mine), "has_more": page * size < len(mine)})

    @_console("delete", "err_no")
    async def delete(self, request: Request) -> Response:
        """``POST /mp/agw/article/delete``: delete one of the account's articles (7004 when unknown)."""
        account = self.state.session(request)
        form = await request.form()
        pgc_id = str(form.get("pgc_id") or request.query_params.get("pgc_id") or "")
        with self.state.lock:
            article = self.state.articles.get(pgc_id)
            if article is None or article.user_id != account.user_id or article.deleted:
                raise ConsoleError(7004)
            article.deleted = True
        return _ok("err_no", {"pgc_id": pgc_id})

    @_console("stat", "code")
    async def item_stat(self, request: Request) -> Response:
        """``GET /mp/agw/statistic/item_stat?pgc_ids=``: reads and reactions of the account's articles."""
        account = self.state.session(request)
        ids = [i for i in (request.query_params.get("pgc_ids") or "").split(",") if i]
        rows = []
        with self.state.lock:
            for pgc_id in ids:
                article = self.state.articles.get(pgc_id)
                if article is not None and article.user_id == account.user_id and not article.deleted:
                    rows.append({"pgc_id": pgc_id, **self.state.engagement(article)})
        return _ok("code", {"stats": rows})

    # -- images and pages ---------------------------------------------------------------------------

    async def image(self, request: Request) -> Response:
        """``GET /img/<uri>``: an uploaded image."""
        with self.state.lock:
            stored = self.state.images.get(request.path_params["uri"])
        if stored is None:
            return Response(status_code=404)
        return Response(stored[0], media_type=stored[1])

    async def sample(self, request: Request) -> Response:
        """``GET /static/sample.png``: stands in for an image hosted elsewhere."""
        return Response(SAMPLE_PNG, media_type="image/png")

    async def item_page(self, request: Request) -> Response:
        """``GET /item/<pgc_id>/``: a published article's page (404 while in review, rejected or deleted)."""
        with self.state.lock:
            article = self.state.articles.get(request.path_params["pgc_id"])
            current = self.state.state_of(article) if article else 3
            counts = self.state.engagement(article) if article else {}
            account = self.state.accounts.get(article.user_id) if article else None
        if article is None or current != 1:
            message = {0: "文章审核中", 2: "文章未通过审核"}.get(current, "文章不存在或已被删除")
            return HTMLResponse(_page("今日头条", f"<p>{message}</p>"), status_code=404)
        author = html.escape(account.screen_name if account else "")
        return HTMLResponse(
            _page(
                article.title,
                f"<article><h1>{html.escape(article.title)}</h1><p class='author'>{author}</p>"
                f"{article.content}<p class='counts'>阅读 {counts['read_count']} · 赞 {counts['digg_count']}"
                f" · 评论 {counts['comment_count']}</p></article>",
            )
        )

    # -- control API --------------------------------------------------------------------------------

    async def control_accounts(self, request: Request) -> Response:
        """``POST /_sandbox/accounts``: register (or replace) an account and its session."""
        body = await _control_body(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        return JSONResponse(asdict(self.state.add(body)))

    async def control_expire(self, request: Request) -> Response:
        """``POST /_sandbox/sessions/expire``: end a session now, by ``sessionid`` or ``user_id``."""
        body = await _control_body(request)
        if not isinstance(body, dict):
            body = {}
        expired = []
        with self.state.lock:
            for account in self.state.accounts.values():
                if body.get("sessionid") == account.sessionid or str(body.get("user_id")) == account.user_id:
                    account.session_expires_at = self.clock.now()
                    expired.append(account.user_id)
        if not expired:
            return JSONResponse({"error": "no such session"}, status_code=404)
        return JSONResponse({"expired": expired})

    async def control_state(self, request: Request) -> Response:
        """``GET /_sandbox/state``: everything the sandbox holds."""
        return JSONResponse(self.state.snapshot())


def create_app() -> Starlette:
    """A fresh Toutiao console sandbox with its own state, clock and faults."""
    return ToutiaoSandbox().app()


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body>{body}</body></html>"
    )
