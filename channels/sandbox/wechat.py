"""WeChat Official Account sandbox: the real endpoints, HTTP 200 + ``errcode`` envelopes, a fake clock.

Mounted at ``/wechat`` (the root of ``api.weixin.qq.com`` paths). What it reproduces:

* tokens: ``GET /cgi-bin/token`` (each new token invalidates the previous one → 40001 for its holders)
  and ``POST /cgi-bin/stable_token`` (the same token while valid, renewed in its last 300 s;
  ``force_refresh`` at most 20 a day and 30 s apart); expiry on the fake clock → 42001.
* ``media/uploadimg`` (jpg/png < 1 MB), ``material/add_material?type=image`` (multipart ``media``; a permanent
  material of the app that uploaded it) and ``material/del_material`` (40007 for a media_id the app does not have).
* ``draft/add|get|batchget`` with WeChat's validation (44003 empty, 45003 title too long, 45004 digest
  too long, 45002 content too large, 45166 scripts, 40007 for a thumb_media_id that is no material of the app:
  unknown, deleted, or another app's); images not uploaded through uploadimg are stripped from the body, as
  WeChat does.
* ``freepublish/submit`` → ``publish_status`` 1 for ``settle_s`` fake seconds, then the configured
  outcome (0 published, 2/3/4 failed); ``freepublish/get|batchget|getarticle|delete`` (5 deleted);
  the platform ban (6) through the control API. Whether ``freepublish/batchget`` still lists a deleted or
  banned article (with ``is_deleted: true``, the field its documentation shows) or leaves it out, the public
  documentation does not say: the ``list_removed`` knob plays either (default: listed). A submitted draft
  leaves the draft box at once (it is being published: ``draft/get`` and ``submit`` answer 40007 for it); a
  failed publish puts it back, as the console lets a person correct and publish it again; a published one
  stays gone ("the draft leaves the draft box once published"). So the draft box tells a submission that
  landed from one that did not (verify: the public documentation states only the published case).
* ``comment/list`` ``{msg_data_id, index (from 0), begin, count ≤ 50, type}``: an article's comments oldest
  first, ``total``; 88000 when the article was published without ``need_open_comment``, 88001 for a message that
  does not exist (or was deleted), 88010 for a count outside 1-50. Comments come only through the control API
  (``POST /wechat/_sandbox/comments {"msg_data_id" | "article_id", "index"?, "comments": [{"text", "author"}] |
  "count": N}``, texts from :mod:`channels.sandbox.comments`).
* ``datacube/getarticletotaldetail`` with the T+1 rule; engagement grows with the fake clock.
* quotas: a daily publish quota per app (45009 until 00:00 Asia/Shanghai on the fake clock) and a
  per-minute API quota (45011).
* published articles as HTML pages at their ``article_url`` (``/wechat/s?__biz=…&mid=…&idx=1&sn=…``),
  showing the platform's notice once deleted or banned.
* every reply carries the fake clock in its ``Date`` header (after uvicorn's own), so clients can
  reason in platform time.

Control API under ``/wechat/_sandbox/``: ``POST accounts`` ``{appid, secret, name, publish_quota,
minute_quota, settle_s, publish_outcome, list_removed}``, ``POST settings`` (the same knobs, for one ``appid`` or
all), ``GET state``, ``POST articles/{article_id}/ban``, plus the shared ``faults``, ``clock/advance`` and
``reset`` (:mod:`channels.sandbox.faults`). ``{"errcode": N}`` faults answer in WeChat's envelope.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import html
import itertools
import json
import re
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from email.utils import formatdate
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from channels.sandbox import comments as reader_comments
from channels.sandbox.faults import FakeClock, Fault, Faults, SandboxError, install_knobs
from channels.sandbox.media import BMP, GIF, JPEG, PNG, image_type

SHANGHAI = ZoneInfo("Asia/Shanghai")

DEMO_ACCOUNTS: list[dict[str, Any]] = [
    {
        "kind": "wechat",
        "name": "示例公众号 (sandbox)",
        "credentials": {"appid": "wx5a1db0x0000demo1", "secret": "sandbox-secret-demo-1"},
        "config": {"base_url": "{sandbox}/wechat", "source_url": "{sandbox}/"},
    },
    {
        "kind": "wechat",
        "name": "示例服务号 (sandbox)",
        "credentials": {"appid": "wx5a1db0x0000demo2", "secret": "sandbox-secret-demo-2"},
        "config": {"base_url": "{sandbox}/wechat", "source_url": "{sandbox}/"},
    },
]

TOKEN_TTL_S = 7200
STABLE_RENEW_S = 300  # stable_token hands out a new token in the old one's last 5 minutes
FORCE_PER_DAY, FORCE_SPACING_S = 20, 30
BODY_IMAGE_TYPES = {PNG, JPEG}  # media/uploadimg: jpg/png under 1 MB
MATERIAL_IMAGE_TYPES = {PNG, JPEG, GIF, BMP}  # material/add_material?type=image: up to 10 MB
_EXTENSIONS = {PNG: "png", JPEG: "jpg", GIF: "gif", BMP: "bmp"}

ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40005: "invalid file type",
    40007: "invalid media_id",
    40009: "invalid image size",
    40013: "invalid appid",
    40014: "invalid access_token",
    40125: "invalid appsecret",
    40164: "invalid ip, not in whitelist",
    41005: "media data missing",
    42001: "access_token expired",
    44003: "empty news data",
    45002: "content size out of limit",
    45003: "title size out of limit",
    45004: "description size out of limit",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit mustslower retry next minute",
    45166: "invalid content",
    47001: "data format error",
    48001: "api unauthorized",
    53502: "Publish ID 无效",
    53503: "该草稿未通过发布检查",
    53600: "Article ID 无效",
    61500: "date format error",
    88000: "without comment privilege",
    88001: "msg_data is not exists",
    88010: "count range error. cout <= 0 or count > 50",
    61501: "date range error",
}

_SCRIPT = re.compile(r"<\s*script|javascript:|\son[a-z]+\s*=", re.IGNORECASE)
_IMG = re.compile(r"<img\b[^>]*?\bsrc=\"([^\"]*)\"[^>]*>", re.IGNORECASE)


class WeChatError(Exception):
    """An error the platform answers with ``{"errcode", "errmsg"}`` (HTTP 200)."""

    def __init__(self, errcode: int, errmsg: str | None = None) -> None:
        super().__init__(errcode)
        self.errcode = errcode
        self.errmsg = errmsg or ERRMSG.get(errcode, "error")


def envelope(errcode: int, errmsg: str | None = None) -> JSONResponse:
    """WeChat's error body, with a request id as the real platform appends one."""
    text = errmsg or ERRMSG.get(errcode, "error")
    return JSONResponse({"errcode": errcode, "errmsg": f"{text} rid: {secrets.token_hex(6)}"})


def render_fault(fault: Fault) -> Response:
    """Injected faults: ``errcode`` → WeChat's envelope (HTTP 200); a bare ``status`` → that HTTP status."""
    if "errcode" in fault.extra:
        code = int(fault.extra["errcode"])
        return envelope(code, fault.extra.get("errmsg"))
    status = fault.status or 500
    return JSONResponse({"errcode": -1, "errmsg": f"injected HTTP {status}"}, status_code=status)


# ------------------------------------------------------------------------------------------ state


@dataclass
class Settings:
    """Per-app knobs (control API)."""

    publish_quota: int = 1000  # freepublish/submit calls per day (Asia/Shanghai, fake clock)
    minute_quota: int = 5000  # API calls per minute, token endpoints excluded
    settle_s: float = 30.0  # fake seconds a submit stays at publish_status 1
    publish_outcome: int = 0  # what a settled submit becomes: 0 published, 2/3/4 failed
    list_removed: bool = True  # freepublish/batchget lists deleted/banned articles (is_deleted) or leaves them out


@dataclass
class App:
    appid: str
    secret: str
    name: str
    settings: Settings = field(default_factory=Settings)
    classic_token: str | None = None
    stable_token: str | None = None
    stable_expires: float = 0.0
    forced: list[float] = field(default_factory=list)
    token_calls: dict[str, int] = field(default_factory=lambda: {"token": 0, "stable_token": 0, "forced": 0})
    issued: list[str] = field(default_factory=list)  # every token handed out, for tests that look for leaks
    calls: dict[str, int] = field(default_factory=dict)
    minute: tuple[int, int] = (0, 0)  # (minute number, calls in it)
    published: tuple[str, int] = ("", 0)  # (Shanghai date, submits that day)


@dataclass
class Draft:
    media_id: str
    appid: str
    articles: list[dict[str, Any]]
    update_time: int


@dataclass
class Job:
    publish_id: str
    msg_data_id: str
    appid: str
    media_id: str
    articles: list[dict[str, Any]]
    submitted_at: float
    settle_at: float
    outcome: int
    status: int = 1
    article_id: str | None = None
    draft: Draft | None = None  # taken out of the draft box by the submit; put back if publishing fails


@dataclass
class Article:
    article_id: str
    appid: str
    publish_id: str
    msg_data_id: str
    sn: str
    news: list[dict[str, Any]]
    published_at: float
    status: int = 0  # 0 live, 5 deleted by the account, 6 banned by the platform
    seed: int = 0


class State:
    """Everything the sandbox knows; one lock, held for each request's whole state change."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.apps: dict[str, App] = {}
        self._ids = itertools.count(1)
        self.clear()
        for demo in DEMO_ACCOUNTS:
            self.add_app(demo["credentials"]["appid"], demo["credentials"]["secret"], demo["name"])

    def clear(self) -> None:
        """Forget tokens, uploads, drafts, jobs and articles (registered apps stay, with default knobs)."""
        with self.lock:
            self.apps = {a.appid: App(a.appid, a.secret, a.name) for a in self.apps.values()}
            self.tokens: dict[str, tuple[str, float]] = {}  # token -> (appid, expires_at)
            self.images: dict[str, tuple[bytes, str]] = {}  # name -> (bytes, content type)
            self.materials: dict[str, tuple[str, str]] = {}  # media_id -> (appid, image name)
            self.drafts: dict[str, Draft] = {}
            self.jobs: dict[str, Job] = {}
            self.articles: dict[str, Article] = {}
            self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}  # (article_id, index from 0) -> rows

    def new_id(self, prefix: str = "") -> str:
        return f"{prefix}{next(self._ids)}{secrets.token_hex(4)}"

    def add_app(self, appid: str, secret: str, name: str = "", **knobs: Any) -> App:
        with self.lock:
            app = self.apps.get(appid) or App(appid, secret, name or appid)
            app.secret, app.name = secret, name or app.name
            self.configure(app, knobs)
            self.apps[appid] = app
            return app

    @staticmethod
    def configure(app: App, knobs: dict[str, Any]) -> None:
        for key, value in knobs.items():
            if not hasattr(app.settings, key):
                raise ValueError(f"unknown setting {key!r}")
            setattr(app.settings, key, type(getattr(app.settings, key))(value))

    # -- tokens ----------------------------------------------------------------------------------------

    def issue(self, app: App, ttl: float = TOKEN_TTL_S) -> tuple[str, float]:
        token = f"{app.appid[-6:]}_{secrets.token_urlsafe(24)}"
        expires = self.clock.now() + ttl
        self.tokens[token] = (app.appid, expires)
        app.issued.append(token)
        return token, expires

    def app_for_token(self, token: str | None) -> App:
        if not token or token not in self.tokens:
            raise WeChatError(40001)
        appid, expires = self.tokens[token]
        if self.clock.now() >= expires:
            raise WeChatError(42001)
        return self.apps[appid]

    def admit(self, token: str | None, path: str) -> App:
        """Authenticate an API call, apply the per-minute quota (45011), count it and settle due submits."""
        with self.lock:
            app = self.app_for_token(token)
            minute = int(self.clock.now() // 60)
            count = app.minute[1] + 1 if app.minute[0] == minute else 1
            if count > app.settings.minute_quota:
                raise WeChatError(45011)
            app.minute = (minute, count)
            name = path.split("/cgi-bin/")[-1].split("/datacube/")[-1]
            app.calls[name] = app.calls.get(name, 0) + 1
            self.settle()
            return app

    # -- asynchronous publishing -----------------------------------------------------------------------

    def settle(self) -> None:
        """Move every submit whose time has come to its outcome (lazily, on each request)."""
        now = self.clock.now()
        for job in self.jobs.values():
            if job.status != 1 or now < job.settle_at:
                continue
            job.status = job.outcome
            if job.outcome != 0:
                if job.draft is not None:  # a failed publish: the draft is back in the box, to be fixed
                    self.drafts[job.media_id] = job.draft
                continue
            article_id = self.new_id("art_")
            self.articles[article_id] = Article(
                article_id=article_id,
                appid=job.appid,
                publish_id=job.publish_id,
                msg_data_id=job.msg_data_id,
                sn=secrets.token_hex(16),
                news=copy.deepcopy(job.articles),
                published_at=job.settle_at,
                seed=int(hashlib.sha256(article_id.encode()).hexdigest()[:6], 16),
            )
            job.article_id = article_id

    def job_status(self, job: Job) -> int:
        if job.article_id and job.article_id in self.articles:
            return self.articles[job.article_id].status or 0
        return job.status


def engagement(article: Article, at: float) -> dict[str, int]:
    """Cumulative numbers of an article at time ``at``: they grow with the fake clock, per article."""
    hours = max(0.0, (at - article.published_at) / 3600)
    reads = int((40 + article.seed % 60) * hours**0.75)
    return {
        "read_user": reads,
        "like_user": reads // 25,
        "share_user": reads // 40,
        "zaikan_user": reads // 60,
        "comment_count": reads // 80,
    }


# ------------------------------------------------------------------------------------------- app


class _FakeDate:
    """Append the fake clock's ``Date`` header to every response (uvicorn's own real-time one comes first)."""

    def __init__(self, app: ASGIApp, clock: FakeClock) -> None:
        self.app, self.clock = app, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                stamp = formatdate(self.clock.now(), usegmt=True).encode()
                message = {**message, "headers": [*message.get("headers", []), (b"date", stamp)]}
            await send(message)

        await self.app(scope, receive, dated)


def _news_item(article: dict[str, Any], *, url: str = "", no_content: bool = False, deleted: bool = False):
    item = {k: v for k, v in article.items() if not (no_content and k == "content")}
    item.update({"url": url, "is_deleted": deleted})
    return item


def _base(request: Request) -> str:
    # The mount prefix (e.g. /wechat) is the scope's root_path; Starlette's base_url gives the root
    # of the outermost app instead.
    root = request.scope.get("root_path", "")
    return str(request.url.replace(path=root or "/", query="")).rstrip("/")


def _article_url(request: Request, art: Article, idx: int = 1) -> str:
    biz = hashlib.sha256(art.appid.encode()).hexdigest()[:16]
    return f"{_base(request)}/s?__biz={biz}&mid={art.msg_data_id}&idx={idx}&sn={art.sn}"


def _news_of(request: Request, art: Article, no_content: bool = False) -> list[dict[str, Any]]:
    return [
        _news_item(a, url=_article_url(request, art, i), no_content=no_content, deleted=art.status != 0)
        for i, a in enumerate(art.news, start=1)
    ]


async def _body_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise WeChatError(47001) from None
    if not isinstance(data, dict):
        raise WeChatError(47001)
    return data


async def _read_media(request: Request, types: set[str], limit: int) -> tuple[bytes, str]:
    """The multipart ``media`` file and its sniffed type (41005 missing, 40005 bad type, 40009 size)."""
    try:
        form = await request.form()
    except Exception:
        raise WeChatError(41005) from None
    upload = form.get("media")
    if upload is None or isinstance(upload, str):
        raise WeChatError(41005)
    data = await upload.read()
    kind = image_type(data)
    if kind is None or kind not in types:
        raise WeChatError(40005)
    if not data or len(data) > limit:
        raise WeChatError(40009)
    return data, kind


def _page_rows(data: dict[str, Any], rows: list[Any]) -> tuple[list[Any], int]:
    offset, count = int(data.get("offset", 0)), int(data.get("count", 20))
    if not 1 <= count <= 20 or offset < 0:
        raise WeChatError(47001)
    return rows[offset : offset + count], len(rows)


ApiEndpoint = Callable[["WeChatSandbox", Request, App], Awaitable[Response]]
Endpoint = Callable[["WeChatSandbox", Request], Awaitable[Response]]


def _api(method: ApiEndpoint) -> Endpoint:
    """Mark a method as an API endpoint: authenticate by ``access_token``, count the call, apply the
    per-minute quota, and answer a WeChatError in WeChat's envelope (HTTP 200)."""

    @functools.wraps(method)
    async def endpoint(self: WeChatSandbox, request: Request) -> Response:
        try:
            app = self.state.admit(request.query_params.get("access_token"), request.url.path)
            return await method(self, request, app)
        except WeChatError as exc:
            return envelope(exc.errcode, exc.errmsg)

    return endpoint


def _envelope_errors(method: Endpoint) -> Endpoint:
    """For the token endpoints, which take no access_token: answer a WeChatError in WeChat's envelope."""

    @functools.wraps(method)
    async def endpoint(self: WeChatSandbox, request: Request) -> Response:
        try:
            return await method(self, request)
        except WeChatError as exc:
            return envelope(exc.errcode, exc.errmsg)

    return endpoint


class WeChatSandbox:
    """One WeChat sandbox: state, fake clock and faults, one method per endpoint (:meth:`routes`)."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.faults = Faults(render_error=render_fault)
        self.state = State(self.clock)

    def routes(self) -> list[Route]:
        """Every URL the sandbox answers (the shared ``/_sandbox/`` knobs are added by :meth:`app`)."""
        post = ["POST"]
        return [
            Route("/cgi-bin/token", self.token, methods=["GET"]),
            Route("/cgi-bin/stable_token", self.stable_token, methods=post),
            Route("/cgi-bin/get_api_domain_ip", self.api_domain_ip, methods=["GET"]),
            Route("/cgi-bin/media/uploadimg", self.uploadimg, methods=post),
            Route("/cgi-bin/material/add_material", self.add_material, methods=post),
            Route("/cgi-bin/material/del_material", self.del_material, methods=post),
            Route("/cgi-bin/draft/add", self.draft_add, methods=post),
            Route("/cgi-bin/draft/get", self.draft_get, methods=post),
            Route("/cgi-bin/draft/batchget", self.draft_batchget, methods=post),
            Route("/cgi-bin/freepublish/submit", self.submit, methods=post),
            Route("/cgi-bin/freepublish/get", self.publish_get, methods=post),
            Route("/cgi-bin/freepublish/batchget", self.publish_batchget, methods=post),
            Route("/cgi-bin/freepublish/getarticle", self.getarticle, methods=post),
            Route("/cgi-bin/freepublish/delete", self.publish_delete, methods=post),
            Route("/datacube/getarticletotaldetail", self.article_total_detail, methods=post),
            Route("/cgi-bin/comment/list", self.comment_list, methods=post),
            Route("/_sandbox/comments", self.control_comments, methods=post),
            Route("/s", self.article_page, methods=["GET"]),
            Route("/mmbiz/{name}", self.image, methods=["GET"]),
            Route("/_sandbox/accounts", self.control_accounts, methods=post),
            Route("/_sandbox/settings", self.control_settings, methods=post),
            Route("/_sandbox/state", self.control_state, methods=["GET"]),
            Route("/_sandbox/articles/{article_id}/ban", self.control_ban, methods=post),
        ]

    def app(self) -> ASGIApp:
        """The sandbox as an ASGI app: knobs, fault middleware and the fake ``Date`` header installed."""
        app = Starlette(routes=self.routes())
        install_knobs(app, self.faults, self.clock, on_reset=self.state.clear)
        app.state.sandbox = self.state  # for tests that run the app in-process
        return _FakeDate(app, self.clock)

    # -- tokens ----------------------------------------------------------------------------------------

    def _credentials(self, appid: str | None, secret: str | None) -> App:
        app = self.state.apps.get(appid or "")
        if app is None:
            raise WeChatError(40013)
        if secret != app.secret:
            raise WeChatError(40125)
        return app

    @_envelope_errors
    async def token(self, request: Request) -> Response:
        """``GET /cgi-bin/token``: a new token, which invalidates the app's previous one (40001 for its holders)."""
        q = request.query_params
        if q.get("grant_type") != "client_credential":
            raise WeChatError(40002, "invalid grant_type")
        with self.state.lock:
            app = self._credentials(q.get("appid"), q.get("secret"))
            app.token_calls["token"] += 1
            if app.classic_token:  # a new token invalidates the previous one
                self.state.tokens.pop(app.classic_token, None)
            app.classic_token, _ = self.state.issue(app)
            return JSONResponse({"access_token": app.classic_token, "expires_in": TOKEN_TTL_S})

    @_envelope_errors
    async def stable_token(self, request: Request) -> Response:
        """``POST /cgi-bin/stable_token``: the same token while valid; ``force_refresh`` 20 a day, 30 s apart."""
        data = await _body_json(request)
        if data.get("grant_type") != "client_credential":
            raise WeChatError(40002, "invalid grant_type")
        with self.state.lock:
            app = self._credentials(data.get("appid"), data.get("secret"))
            now = self.clock.now()
            app.token_calls["stable_token"] += 1
            if data.get("force_refresh"):
                day_ago = [t for t in app.forced if t > now - 86400]
                if len(day_ago) >= FORCE_PER_DAY:
                    raise WeChatError(45009)
                if day_ago and now - day_ago[-1] < FORCE_SPACING_S:
                    raise WeChatError(45011)
                app.forced = [*day_ago, now]
                app.token_calls["forced"] += 1
                if app.stable_token:  # forcing invalidates the previous stable token
                    self.state.tokens.pop(app.stable_token, None)
                app.stable_token, app.stable_expires = self.state.issue(app)
            elif app.stable_token is None or app.stable_expires - now < STABLE_RENEW_S:
                # renewed early; the old one stays valid until it expires on its own
                app.stable_token, app.stable_expires = self.state.issue(app)
            return JSONResponse({"access_token": app.stable_token, "expires_in": int(app.stable_expires - now)})

    @_api
    async def api_domain_ip(self, request: Request, app: App) -> Response:
        """``GET /cgi-bin/get_api_domain_ip``: the API's addresses (a cheap authenticated call)."""
        return JSONResponse({"ip_list": ["101.226.62.77", "101.226.62.78"]})

    # -- uploads ---------------------------------------------------------------------------------------

    def _store_image(self, data: bytes, mime: str) -> str:
        """Keep an uploaded image under a new name (call with the lock held); returns the name."""
        name = f"{self.state.new_id('img_')}.{_EXTENSIONS[mime]}"
        self.state.images[name] = (data, mime)
        return name

    @_api
    async def uploadimg(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/media/uploadimg``: an image for an article body (jpg/png < 1 MB) → ``{url}``."""
        data, kind = await _read_media(request, BODY_IMAGE_TYPES, 1_000_000)
        with self.state.lock:
            name = self._store_image(data, kind)
        return JSONResponse({"url": f"{_base(request)}/mmbiz/{name}"})

    @_api
    async def add_material(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/material/add_material?type=image``: a permanent image → ``{media_id, url}``."""
        if request.query_params.get("type") != "image":
            raise WeChatError(40004, "invalid media type")
        data, kind = await _read_media(request, MATERIAL_IMAGE_TYPES, 10_000_000)
        with self.state.lock:
            name = self._store_image(data, kind)
            media_id = self.state.new_id("mat_")
            self.state.materials[media_id] = (app.appid, name)
        return JSONResponse({"media_id": media_id, "url": f"{_base(request)}/mmbiz/{name}"})

    @_api
    async def del_material(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/material/del_material {media_id}``: delete one of the app's permanent materials."""
        data = await _body_json(request)
        with self.state.lock:
            found = self.state.materials.get(str(data.get("media_id")))
            if found is None or found[0] != app.appid:
                raise WeChatError(40007)
            del self.state.materials[str(data["media_id"])]
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def image(self, request: Request) -> Response:
        """``GET /mmbiz/<name>``: an uploaded image, as WeChat's image host serves it."""
        found = self.state.images.get(request.path_params["name"])
        if found is None:
            return Response(status_code=404)
        return Response(found[0], media_type=found[1])

    # -- drafts ----------------------------------------------------------------------------------------

    def _clean_article(self, request: Request, app: App, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise WeChatError(47001)
        title, content = str(raw.get("title") or ""), str(raw.get("content") or "")
        if not title.strip() or not content.strip():
            raise WeChatError(44003)
        if len(title) > 64:
            raise WeChatError(45003)
        if len(str(raw.get("digest") or "")) > 120:
            raise WeChatError(45004)
        if len(content) >= 20_000 or len(content.encode()) >= 1_000_000:
            raise WeChatError(45002)
        if _SCRIPT.search(content):
            raise WeChatError(45166)
        thumb = raw.get("thumb_media_id")
        material = self.state.materials.get(str(thumb)) if thumb else None
        if material is None or material[0] != app.appid:  # a material of this app only
            raise WeChatError(40007)
        own = f"{_base(request)}/mmbiz/"
        # WeChat keeps only images hosted by itself (uploaded with uploadimg); outside ones are dropped.
        content = _IMG.sub(lambda m: m.group(0) if m.group(1).startswith(own) else "", content)
        return {
            "title": title,
            "author": str(raw.get("author") or ""),
            "digest": str(raw.get("digest") or ""),
            "content": content,
            "content_source_url": str(raw.get("content_source_url") or ""),
            "thumb_media_id": thumb,
            "thumb_url": f"{own}{material[1]}",
            "need_open_comment": int(raw.get("need_open_comment") or 0),
            "only_fans_can_comment": int(raw.get("only_fans_can_comment") or 0),
        }

    @_api
    async def draft_add(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/draft/add``: validate and store a draft → ``{media_id}``."""
        data = await _body_json(request)
        articles = data.get("articles")
        if not isinstance(articles, list) or not articles:
            raise WeChatError(44003)
        with self.state.lock:
            cleaned = [self._clean_article(request, app, a) for a in articles]
            media_id = self.state.new_id("draft_")
            self.state.drafts[media_id] = Draft(media_id, app.appid, cleaned, int(self.clock.now()))
        return JSONResponse({"media_id": media_id})

    @_api
    async def draft_get(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/draft/get``: one draft's articles."""
        data = await _body_json(request)
        draft = self.state.drafts.get(str(data.get("media_id")))
        if draft is None or draft.appid != app.appid:
            raise WeChatError(40007)
        return JSONResponse({"news_item": [_news_item(a) for a in draft.articles]})

    @_api
    async def draft_batchget(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/draft/batchget``: the app's drafts, newest first, paged."""
        data = await _body_json(request)
        with self.state.lock:
            drafts = sorted(
                (d for d in self.state.drafts.values() if d.appid == app.appid), key=lambda d: -d.update_time
            )
            rows, total = _page_rows(data, [asdict(d) for d in drafts])
        no_content = bool(data.get("no_content"))
        items = [
            {
                "media_id": d["media_id"],
                "content": {"news_item": [_news_item(a, no_content=no_content) for a in d["articles"]]},
                "update_time": d["update_time"],
            }
            for d in rows
        ]
        return JSONResponse({"total_count": total, "item_count": len(items), "item": items})

    # -- publishing ------------------------------------------------------------------------------------

    @_api
    async def submit(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/freepublish/submit``: accept a draft for publishing (daily quota: 45009)."""
        data = await _body_json(request)
        with self.state.lock:
            draft = self.state.drafts.get(str(data.get("media_id")))
            if draft is None or draft.appid != app.appid:
                raise WeChatError(40007)
            now = self.clock.now()
            today = datetime.fromtimestamp(now, SHANGHAI).date().isoformat()
            used = app.published[1] if app.published[0] == today else 0
            if used >= app.settings.publish_quota:
                raise WeChatError(45009)
            app.published = (today, used + 1)
            publish_id = str(2247480000 + next(self.state._ids))
            msg_data_id = str(2650000000 + next(self.state._ids))
            self.state.jobs[publish_id] = Job(
                publish_id=publish_id,
                msg_data_id=msg_data_id,
                appid=app.appid,
                media_id=draft.media_id,
                articles=copy.deepcopy(draft.articles),
                draft=self.state.drafts.pop(draft.media_id),  # being published: no longer in the draft box
                submitted_at=now,
                settle_at=now + app.settings.settle_s,
                outcome=app.settings.publish_outcome,
            )
            self.state.settle()  # settle_s may be 0
        return JSONResponse({"errcode": 0, "errmsg": "ok", "publish_id": publish_id, "msg_data_id": msg_data_id})

    @_api
    async def publish_get(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/freepublish/get``: a submit's ``publish_status`` and, once published, its URLs."""
        data = await _body_json(request)
        with self.state.lock:
            job = self.state.jobs.get(str(data.get("publish_id")))
            if job is None or job.appid != app.appid:
                raise WeChatError(53502)
            status = self.state.job_status(job)
            reply: dict[str, Any] = {"publish_id": job.publish_id, "publish_status": status}
            if job.article_id:
                art = self.state.articles[job.article_id]
                reply["article_id"] = art.article_id
                reply["article_detail"] = {
                    "count": len(art.news),
                    "item": [
                        {"idx": i, "article_url": _article_url(request, art, i)} for i in range(1, len(art.news) + 1)
                    ],
                }
            reply["fail_idx"] = list(range(1, len(job.articles) + 1)) if status in (2, 3, 4) else []
        return JSONResponse(reply)

    @_api
    async def publish_batchget(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/freepublish/batchget``: the app's published articles, newest first, paged."""
        data = await _body_json(request)
        no_content = bool(data.get("no_content"))
        with self.state.lock:
            listed = (
                a
                for a in self.state.articles.values()
                if a.appid == app.appid and (a.status == 0 or app.settings.list_removed)
            )
            mine = sorted(listed, key=lambda a: -a.published_at)
            rows, total = _page_rows(data, mine)
            items = [
                {
                    "article_id": a.article_id,
                    "content": {"news_item": _news_of(request, a, no_content)},
                    "update_time": int(a.published_at),
                }
                for a in rows
            ]
        return JSONResponse({"total_count": total, "item_count": len(items), "item": items})

    @_api
    async def getarticle(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/freepublish/getarticle``: one published article."""
        data = await _body_json(request)
        art = self.state.articles.get(str(data.get("article_id")))
        if art is None or art.appid != app.appid:
            raise WeChatError(53600)
        return JSONResponse({"news_item": _news_of(request, art)})

    @_api
    async def publish_delete(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/freepublish/delete``: retract a published article (status 5)."""
        data = await _body_json(request)
        with self.state.lock:
            art = self.state.articles.get(str(data.get("article_id")))
            if art is None or art.appid != app.appid:
                raise WeChatError(53600)
            if art.status == 0:
                art.status = 5
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    # -- comments --------------------------------------------------------------------------------------

    def _commented(self, msg_data_id: str, index: int) -> Article:
        """The live article with comments open for ``comment/list`` (call with the lock held)."""
        art = next((a for a in self.state.articles.values() if a.msg_data_id == msg_data_id), None)
        if art is None or art.status != 0 or not 0 <= index < len(art.news):
            raise WeChatError(88001)
        if not int(art.news[index].get("need_open_comment") or 0):
            raise WeChatError(88000)
        return art

    @_api
    async def comment_list(self, request: Request, app: App) -> Response:
        """``POST /cgi-bin/comment/list``: one article's comments, oldest first, from ``begin``."""
        data = await _body_json(request)
        try:
            begin, count = int(data.get("begin", 0)), int(data.get("count", 0))
            kind, index = int(data.get("type", 0)), int(data.get("index", 0))
        except (TypeError, ValueError):
            raise WeChatError(47001) from None
        if not 1 <= count <= 50:
            raise WeChatError(88010)
        if begin < 0 or kind not in (0, 1, 2):
            raise WeChatError(47001)
        with self.state.lock:
            art = self._commented(str(data.get("msg_data_id", "")), index)
            if art.appid != app.appid:
                raise WeChatError(88001)
            rows = self.state.comments.get((art.article_id, index), [])
            if kind:  # 1: ordinary comments only, 2: the elected (精选) ones
                rows = [r for r in rows if r["comment_type"] == kind - 1]
            chunk = [dict(r) for r in rows[begin : begin + count]]
        return JSONResponse({"errcode": 0, "errmsg": "ok", "total": len(rows), "comment": chunk})

    # -- statistics ------------------------------------------------------------------------------------

    @_api
    async def article_total_detail(self, request: Request, app: App) -> Response:
        """``POST /datacube/getarticletotaldetail``: daily totals per article, T+1, up to 30 days."""
        data = await _body_json(request)
        try:
            begin = date.fromisoformat(str(data.get("begin_date")))
            end = date.fromisoformat(str(data.get("end_date")))
        except ValueError:
            raise WeChatError(61500) from None
        now = self.clock.now()
        yesterday = datetime.fromtimestamp(now, SHANGHAI).date() - timedelta(days=1)
        if end > yesterday or begin > end:  # T+1: nothing about today
            raise WeChatError(61501)
        out = []
        with self.state.lock:
            for art in sorted(self.state.articles.values(), key=lambda a: a.published_at):
                ref = datetime.fromtimestamp(art.published_at, SHANGHAI).date()
                if art.appid != app.appid or not begin <= ref <= end:
                    continue
                last = min(yesterday, ref + timedelta(days=29))
                details = []
                day = ref
                while day <= last:
                    day_end = datetime.combine(day + timedelta(days=1), datetime.min.time(), SHANGHAI).timestamp()
                    details.append({"stat_date": day.isoformat(), **engagement(art, min(day_end, now))})
                    day += timedelta(days=1)
                for idx in range(1, len(art.news) + 1):
                    out.append(
                        {
                            "ref_date": ref.isoformat(),
                            "msgid": f"{art.msg_data_id}_{idx}",
                            "publish_type": 0,
                            "detail_list": details,
                        }
                    )
        return JSONResponse({"list": out, "is_delay": False})

    # -- article pages ---------------------------------------------------------------------------------

    async def article_page(self, request: Request) -> Response:
        """``GET /s?__biz=…&mid=…&idx=…&sn=…``: a published article's page, or the platform's notice."""
        q = request.query_params
        with self.state.lock:
            art = next((a for a in self.state.articles.values() if a.sn == q.get("sn")), None)
        if art is None or art.msg_data_id != q.get("mid"):
            return HTMLResponse("<!doctype html><p>参数错误</p>", status_code=404)
        idx = int(q.get("idx") or 1)
        if not 1 <= idx <= len(art.news):
            return HTMLResponse("<!doctype html><p>参数错误</p>", status_code=404)
        news = art.news[idx - 1]
        title = html.escape(news["title"])
        if art.status == 5:
            body = "<p class='notice'>该内容已被发布者删除</p>"
        elif art.status == 6:
            body = "<p class='notice'>此内容因违规无法查看</p>"
        else:
            numbers = engagement(art, self.clock.now())
            body = (
                f"<h1>{title}</h1><p class='meta'>{html.escape(news['author'])} · "
                f"{datetime.fromtimestamp(art.published_at, SHANGHAI):%Y-%m-%d %H:%M}</p>"
                f"<div id='js_content'>{news['content']}</div>"
                f"<p class='stats'>阅读 {numbers['read_user']} · 赞 {numbers['like_user']}</p>"
            )
            if news["content_source_url"]:
                body += f"<p><a href='{html.escape(news['content_source_url'])}'>阅读原文</a></p>"
        return HTMLResponse(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>{body}</body></html>"
        )

    # -- control API -----------------------------------------------------------------------------------

    async def control_accounts(self, request: Request) -> Response:
        """``POST /_sandbox/accounts``: register (or update) an app and its knobs."""
        data = await request.json()
        try:
            knobs = {k: v for k, v in data.items() if k not in ("appid", "secret", "name")}
            app = self.state.add_app(str(data["appid"]), str(data["secret"]), str(data.get("name", "")), **knobs)
        except (KeyError, ValueError, TypeError) as exc:
            return JSONResponse({"error": f"bad account: {exc}"}, status_code=400)
        return JSONResponse({"appid": app.appid, "name": app.name, "settings": asdict(app.settings)})

    async def control_settings(self, request: Request) -> Response:
        """``POST /_sandbox/settings``: change the knobs of one ``appid`` or of every app."""
        data = dict(await request.json())
        appid = data.pop("appid", None)
        with self.state.lock:
            if appid:
                targets = [self.state.apps[appid]] if appid in self.state.apps else []
            else:
                targets = list(self.state.apps.values())
            if not targets:
                return JSONResponse({"error": f"unknown appid {appid}"}, status_code=404)
            try:
                for app in targets:
                    self.state.configure(app, data)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({a.appid: asdict(a.settings) for a in targets})

    async def control_comments(self, request: Request) -> Response:
        """``POST /_sandbox/comments``: readers comment on a published article now (texts given, or ``count``)."""
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise SandboxError("body must be a JSON object")
            index = int(data.get("index", 0))
            with self.state.lock:
                wanted = str(data.get("article_id") or "")
                msg = str(data.get("msg_data_id") or "")
                found = (a for a in self.state.articles.values() if wanted == a.article_id or msg == a.msg_data_id)
                art = next(found, None) if wanted or msg else None
                if art is None or not 0 <= index < len(art.news):
                    return JSONResponse({"error": "no such published article"}, status_code=404)
                rows = self.state.comments.setdefault((art.article_id, index), [])
                added = []
                for sample in reader_comments.from_body(data, start=len(rows)):
                    row = {
                        "user_comment_id": len(rows) + 1,
                        # a reader's openid on this account, stable per display name
                        "openid": "o" + hashlib.sha256(f"{art.appid}:{sample.author}".encode()).hexdigest()[:27],
                        "create_time": int(self.clock.now()),
                        "content": sample.text,
                        "comment_type": 0,
                    }
                    rows.append(row)
                    added.append(row)
        except (SandboxError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad comments: {exc}"}, status_code=400)
        return JSONResponse(added)

    async def control_ban(self, request: Request) -> Response:
        """``POST /_sandbox/articles/<article_id>/ban``: the platform bans an article (status 6)."""
        with self.state.lock:
            art = self.state.articles.get(request.path_params["article_id"])
            if art is None:
                return JSONResponse({"error": "unknown article"}, status_code=404)
            art.status = 6
        return JSONResponse({"article_id": art.article_id, "status": 6})

    async def control_state(self, request: Request) -> Response:
        """``GET /_sandbox/state``: every app with its tokens' calls, the tokens issued, drafts, jobs and articles."""
        with self.state.lock:
            self.state.settle()
            apps = {}
            for app in self.state.apps.values():
                apps[app.appid] = {
                    "name": app.name,
                    "settings": asdict(app.settings),
                    "token_calls": dict(app.token_calls),
                    "issued_tokens": list(app.issued),
                    "calls": dict(app.calls),
                    "published_today": app.published[1],
                    "drafts": [d.media_id for d in self.state.drafts.values() if d.appid == app.appid],
                    "materials": [m for m, (owner, _) in self.state.materials.items() if owner == app.appid],
                    "jobs": [
                        {
                            "publish_id": j.publish_id,
                            "msg_data_id": j.msg_data_id,
                            "media_id": j.media_id,
                            "status": self.state.job_status(j),
                            "article_id": j.article_id,
                            "title": j.articles[0]["title"],
                        }
                        for j in self.state.jobs.values()
                        if j.appid == app.appid
                    ],
                    "articles": [
                        {
                            "article_id": a.article_id,
                            "publish_id": a.publish_id,
                            "status": a.status,
                            "title": a.news[0]["title"],
                            "content_source_url": a.news[0]["content_source_url"],
                            "url": _article_url(request, a),
                        }
                        for a in self.state.articles.values()
                        if a.appid == app.appid
                    ],
                }
        return JSONResponse({"now": self.clock.now(), "apps": apps})


def create_app() -> ASGIApp:
    """The WeChat sandbox as an ASGI app (mounted by :func:`channels.sandbox.create_app` at ``/wechat``)."""
    return WeChatSandbox().app()
