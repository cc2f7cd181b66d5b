"""Weibo sandbox: the open API's statuses endpoints, long articles, tokens, limits and pages, in memory.

Mounted under ``/weibo`` (so ``{sandbox}/weibo/2/statuses/share.json`` stands for
``https://api.weibo.com/2/statuses/share.json``). What it reproduces:

- errors as HTTP 4xx with ``{"request", "error_code", "error"}``; the long-article endpoint answers
  HTTP 200 with ``{"code", "msg", "data"}``;
- OAuth2 tokens registered through the control API, expiring on the fake clock (21327) or revoked
  (21332); no refresh;
- ``share.json``: ``rip`` required, at most 140 Chinese characters as Weibo counts them (20012), a link on
  the account's safe domain (10017), no ``#topic#`` (10017) (the counting and the link rules are the
  sandbox's own, in :mod:`channels.sandbox.weibo_rules`), the same text again within a day (20019), more
  than ``hourly_limit`` posts (default 30) in the last hour of the fake clock (10024); links in the stored
  text are rewritten to ``http://t.cn/…`` addresses, as Weibo does;
- ``user_timeline``, ``show``, ``destroy`` (20101 when gone, 20102 when not yours), ``count`` (≤ 100 ids,
  deleted ones silently missing; comments, reposts and attitudes grow with the fake clock),
  ``oauth2/get_token_info``;
- ``comments/show.json`` (``id`` required, ``since_id``, ``max_id``, ``count`` ≤ 200, ``page``): a status's
  comments newest first, ``total_number``; 20101 for a deleted or unknown status. Comments come only through the
  control API (``POST /_sandbox/comments {"id", "comments": [{"text", "author"}] | "count": N}``, texts from
  :mod:`channels.sandbox.comments`), so a test knows exactly what is there;
- ``proxy/article/publish.json`` for accounts flagged ``long_article`` (10014 for the others);
- every status and article as an HTML page: ``/<uid>/<id>`` and ``/ttarticle/p/show?id=``;
- control API under ``/_sandbox/``: ``POST accounts``, ``POST comments``, ``POST tokens/revoke``, ``GET state`` and the
  shared knobs (faults with ``error_code``, clock, reset).
"""

from __future__ import annotations

import functools
import hashlib
import html
import itertools
import os
import re
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from channels.sandbox import comments as reader_comments
from channels.sandbox import weibo_rules
from channels.sandbox.faults import FakeClock, Fault, Faults, SandboxError, install_knobs
from channels.sandbox.media import SAMPLE_PNG

HOUR = 3600.0
REPEAT_WINDOW_S = 24 * HOUR
DEFAULT_TOKEN_LIFETIME_S = 30 * 24 * HOUR
BEIJING = timezone(timedelta(hours=8))
_BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

# The messages Weibo sends with each code (open.weibo.com/wiki/Error_code), for injected faults too.
MESSAGES: dict[int, str] = {
    10001: "system error",
    10002: "service unavailable",
    10008: "param error, see doc for more info",
    10014: "Insufficient app permissions",
    10016: "Miss required parameter (%s) , see doc for more info",
    10017: "Parameter (%s)'s value invalid, expect (%s) , but get (%s) , see doc for more info",
    10022: "IP requests out of rate limit",
    10023: "User requests out of rate limit",
    10024: "User requests for (%s) out of rate limit",
    20009: "IDs is too many",
    20012: "Text too long, please input text less than 140 characters",
    20019: "Repeat conetnt",  # sic: Weibo's own spelling
    20101: "Target weibo does not exist",
    20102: "Not your own weibo",
    21327: "expired_token",
    21332: "invalid_access_token",
}

DEMO_ACCOUNTS: list[dict[str, Any]] = [
    {
        "kind": "weibo",
        "name": "Demo Weibo",
        "credentials": {"access_token": "demo-weibo-token-1", "uid": "5000000001"},
        "config": {"base_url": "{sandbox}/weibo", "safe_domain": "{sandbox}", "rip": "127.0.0.1"},
    },
    {
        "kind": "weibo",
        "name": "Demo Weibo (long articles)",
        "credentials": {"access_token": "demo-weibo-token-2", "uid": "5000000002"},
        "config": {
            "base_url": "{sandbox}/weibo",
            "safe_domain": "{sandbox}",
            "rip": "127.0.0.1",
            "long_article": True,
            "default_cover": "{sandbox}/weibo/static/cover.png",
        },
    },
]


def demo_safe_domains() -> list[str]:
    """The safe domains the demo app registered: the hosts the sandbox (and its demo website) answer on.

    ``MATRIX_SANDBOX_HOST`` is the host name clients use for the sandbox (the service builds the demo
    website's links from it), which is not necessarily the address the server binds to.
    """
    return sorted({"127.0.0.1", "localhost", os.environ.get("MATRIX_SANDBOX_HOST") or "127.0.0.1"})


class WeiboError(Exception):
    """One Weibo error answer (code, message, HTTP status)."""

    def __init__(self, code: int, message: str | None = None, status: int = 400) -> None:
        super().__init__(message or MESSAGES.get(code, "error"))
        self.code = code
        self.message = message or MESSAGES.get(code, "error")
        self.status = status


@dataclass
class Account:
    """A Weibo user authorised by our app."""

    uid: str
    access_token: str
    screen_name: str
    expires_at: float
    created_at: float
    revoked: bool = False
    long_article: bool = False
    safe_domains: list[str] = field(default_factory=list)
    hourly_limit: int = 30


@dataclass
class Status:
    """A posted status; engagement is derived from its age on the fake clock."""

    id: int
    uid: str
    text: str  # as stored by Weibo: links rewritten to t.cn
    sent_text: str  # as the client sent it
    links: dict[str, str]  # short -> original
    created_at: float
    deleted: bool = False
    article_id: str | None = None


@dataclass
class StatusComment:
    """A reader's comment on a status (ids from the same sequence as statuses: they increase with time)."""

    id: int
    status_id: int
    author: str
    text: str
    created_at: float


@dataclass
class Article:
    """A long article (头条文章) and the status bound to it."""

    object_id: str
    uid: str
    title: str
    content: str
    cover: str
    summary: str
    mid: str
    created_at: float


class WeiboState:
    """All of the sandbox's data, behind one lock (handlers never await while holding it)."""

    def __init__(self, clock: FakeClock, safe_domains: Iterable[str] | None = None) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        # what an account registered without ``safe_domains`` gets (the demo accounts included)
        self.default_safe_domains = list(safe_domains) if safe_domains is not None else demo_safe_domains()
        self.reset()

    def reset(self) -> None:
        """Forget everything and load the demo accounts again."""
        with self.lock:
            self.accounts: dict[str, Account] = {}
            self.statuses: dict[int, Status] = {}
            self.articles: dict[str, Article] = {}
            self.comments: dict[int, list[StatusComment]] = {}
            self.calls: dict[str, int] = {}
            self._ids = itertools.count(1)
            for demo in DEMO_ACCOUNTS:
                self._add_account(
                    {
                        "uid": demo["credentials"]["uid"],
                        "access_token": demo["credentials"]["access_token"],
                        "screen_name": demo["name"],
                        "long_article": bool(demo["config"].get("long_article")),
                        "expires_in": 365 * 24 * HOUR,
                    }
                )

    def _add_account(self, data: dict[str, Any]) -> Account:
        now = self.clock.now()
        uid = str(data.get("uid") or 5_100_000_000 + len(self.accounts))
        account = Account(
            uid=uid,
            access_token=str(data.get("access_token") or f"2.00{secrets.token_hex(12)}"),
            screen_name=str(data.get("screen_name") or f"user{uid}"),
            expires_at=now + float(data.get("expires_in", DEFAULT_TOKEN_LIFETIME_S)),
            created_at=now,
            long_article=bool(data.get("long_article", False)),
            safe_domains=[str(d) for d in data.get("safe_domains") or self.default_safe_domains],
            hourly_limit=int(data.get("hourly_limit", 30)),
        )
        self.accounts[uid] = account
        return account

    def add_account(self, data: dict[str, Any]) -> Account:
        """Register (or replace) an account; returns it."""
        with self.lock:
            return self._add_account(data)

    def count_call(self, name: str) -> None:
        """Count one call of an endpoint (``GET /_sandbox/state`` shows the counts)."""
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def authorise(self, token: str | None) -> Account:
        """The account owning a valid token, or the error Weibo gives (21332 unknown/revoked, 21327 expired)."""
        with self.lock:
            for account in self.accounts.values():
                if token and account.access_token == token:
                    if account.revoked:
                        raise WeiboError(21332, status=401)
                    if self.clock.now() >= account.expires_at:
                        raise WeiboError(21327, status=401)
                    return account
        raise WeiboError(21332, status=401)

    def next_id(self) -> int:
        """A new status id: 16 digits like Weibo's, increasing with time (call with the lock held)."""
        return 4_900_000_000_000_000 + next(self._ids)

    def engagement(self, status: Status) -> dict[str, int]:
        """Comments, reposts and attitudes: seeded per status, growing with age on the fake clock."""
        minutes = max(0.0, (self.clock.now() - status.created_at) / 60.0)
        seed = hashlib.sha256(str(status.id).encode()).digest()
        rate = [0.05 + seed[i] / 255 * 0.45 for i in range(3)]
        return {
            "comments": int(minutes * rate[0]),
            "reposts": int(minutes * rate[1] * 0.6),
            "attitudes": int(minutes * rate[2] * 2),
        }

    def status_json(self, status: Status) -> dict[str, Any]:
        """A status object as the API shows it."""
        account = self.accounts.get(status.uid)
        counts = self.engagement(status)
        return {
            "created_at": datetime.fromtimestamp(status.created_at, BEIJING).strftime("%a %b %d %H:%M:%S %z %Y"),
            "id": status.id,
            "idstr": str(status.id),
            "mid": str(status.id),
            "text": status.text,
            "source": '<a href="https://app.weibo.com" rel="nofollow">media-matrix</a>',
            "favorited": False,
            "truncated": False,
            "reposts_count": counts["reposts"],
            "comments_count": counts["comments"],
            "attitudes_count": counts["attitudes"],
            "user": {"id": int(status.uid), "idstr": status.uid, "screen_name": account.screen_name if account else ""},
        }

    def post_status(self, account: Account, text: str, *, interface: str, article_id: str | None = None) -> Status:
        """Check the limits that apply to any new status and store it, atomically.

        Raises 10024 past the hourly limit (counted on the fake clock, deleted statuses included: they
        were posted) and 20019 for the same text again within a day. Links in the stored text become
        ``t.cn`` addresses, as Weibo shows them.
        """
        with self.lock:
            now = self.clock.now()
            recent = [s for s in self.statuses.values() if s.uid == account.uid and now - s.created_at < HOUR]
            if len(recent) >= account.hourly_limit:
                raise WeiboError(10024, MESSAGES[10024].replace("%s", interface), status=403)
            for other in self.statuses.values():
                if (
                    other.uid == account.uid
                    and not other.deleted
                    and other.sent_text == text
                    and now - other.created_at < REPEAT_WINDOW_S
                ):
                    raise WeiboError(20019)
            short_links: dict[str, str] = {}

            def shorten(match: re.Match[str]) -> str:
                short = f"http://t.cn/{_short_code(len(short_links) + 7 * len(self.statuses))}"
                short_links[short] = match.group()
                return short

            status = Status(
                id=self.next_id(),
                uid=account.uid,
                text=weibo_rules.LINK_RE.sub(shorten, text),
                sent_text=text,
                links=short_links,
                created_at=now,
                article_id=article_id,
            )
            self.statuses[status.id] = status
            return status

    def find_status(self, raw_id: str | None) -> Status:
        """The live status with this id, or 20101 (call with the lock held)."""
        try:
            status = self.statuses.get(int(raw_id or ""))
        except ValueError:
            status = None
        if status is None or status.deleted:
            raise WeiboError(20101)
        return status

    def snapshot(self) -> dict[str, Any]:
        """Everything, for ``GET /_sandbox/state``."""
        with self.lock:
            return {
                "now": self.clock.now(),
                "accounts": [asdict(a) for a in self.accounts.values()],
                "statuses": [{**asdict(s), **self.engagement(s), "idstr": str(s.id)} for s in self.statuses.values()],
                "articles": [asdict(a) for a in self.articles.values()],
                "calls": dict(self.calls),
            }


def _reader_uid(name: str) -> int:
    # a reader's uid, stable per display name (10 digits, like Weibo's)
    return 6_000_000_000 + int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 1_000_000_000


def _short_code(n: int) -> str:
    digits = []
    n += 1_000_000_000
    while n:
        n, rest = divmod(n, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits))


def _error_response(exc: WeiboError, request_path: str) -> JSONResponse:
    return JSONResponse({"request": request_path, "error_code": exc.code, "error": exc.message}, status_code=exc.status)


def sandbox_root(request: Request) -> str:
    """Where this sandbox is mounted, as a URL (``request.base_url`` stops at the outermost app)."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}".rstrip("/")


def render_fault(fault: Fault) -> Response:
    """An injected fault in Weibo's own envelope (``error_code`` given, or derived from the status)."""
    status = fault.status or 400
    code = fault.extra.get("error_code")
    if code is None:
        code = 10023 if status == 429 else (10001 if status >= 500 else 10008)
    code = int(code)
    message = str(fault.extra.get("error") or MESSAGES.get(code, "error"))
    if "code" in fault.extra:  # a long-article answer: HTTP 200 + code/msg
        return JSONResponse({"code": str(fault.extra["code"]), "msg": message, "data": {}}, status_code=200)
    return JSONResponse({"request": fault.path or "/2/", "error_code": code, "error": message}, status_code=status)


# ---------------------------------------------------------------------------------------- the app

Endpoint = Callable[["WeiboSandbox", Request], Awaitable[Response]]


def _api(name: str) -> Callable[[Endpoint], Endpoint]:
    """Mark a method as an API endpoint: count its calls as ``name``, answer a WeiboError in Weibo's envelope."""

    def wrap(method: Endpoint) -> Endpoint:
        @functools.wraps(method)
        async def endpoint(self: WeiboSandbox, request: Request) -> Response:
            self.state.count_call(name)
            try:
                return await method(self, request)
            except WeiboError as exc:
                path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
                return _error_response(exc, path)

        return endpoint

    return wrap


async def _params(request: Request) -> dict[str, str]:
    """Query string and (for POST) form fields, the way Weibo reads either."""
    data = dict(request.query_params)
    if request.method == "POST":
        form = await request.form()
        data.update({k: v for k, v in form.items() if isinstance(v, str)})
    return data


def _require(data: dict[str, str], name: str) -> str:
    value = (data.get(name) or "").strip()
    if not value:
        raise WeiboError(10016, MESSAGES[10016].replace("%s", name))
    return value


async def _control_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return {}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body>{body}</body></html>",
        status_code=status,
    )


def _article_failure(code: str, message: str) -> Response:
    # the long-article endpoint answers HTTP 200 with its own code, never Weibo's 4xx envelope
    return JSONResponse({"code": code, "msg": message, "data": {}})


class WeiboSandbox:
    """One Weibo sandbox: its state, fake clock and faults, and one method per endpoint (:meth:`routes`)."""

    def __init__(self, safe_domains: Iterable[str] | None = None) -> None:
        self.clock = FakeClock()
        self.state = WeiboState(self.clock, safe_domains)
        self.faults = Faults(render_error=render_fault)

    def routes(self) -> list[Route]:
        """Every URL the sandbox answers (the shared ``/_sandbox/`` knobs are added by :meth:`app`)."""
        return [
            Route("/_sandbox/accounts", self.control_accounts, methods=["POST"]),
            Route("/_sandbox/tokens/revoke", self.control_revoke, methods=["POST"]),
            Route("/_sandbox/state", self.control_state, methods=["GET"]),
            Route("/2/statuses/share.json", self.share, methods=["POST"]),
            Route("/2/statuses/user_timeline.json", self.user_timeline, methods=["GET"]),
            Route("/2/statuses/show.json", self.show, methods=["GET"]),
            Route("/2/statuses/count.json", self.count, methods=["GET"]),
            Route("/2/statuses/destroy.json", self.destroy, methods=["POST"]),
            Route("/2/comments/show.json", self.comments_show, methods=["GET"]),
            Route("/_sandbox/comments", self.control_comments, methods=["POST"]),
            Route("/oauth2/get_token_info", self.token_info, methods=["POST"]),
            Route("/proxy/article/publish.json", self.article_publish, methods=["POST"]),
            Route("/ttarticle/p/show", self.article_page, methods=["GET"]),
            Route("/static/cover.png", self.cover, methods=["GET"]),
            # Last: weibo.com/<uid>/<id> pages must not shadow the API paths above.
            Route("/{uid}/{sid}", self.status_page, methods=["GET"]),
        ]

    def app(self) -> Starlette:
        """The sandbox as an ASGI app, knobs and fault middleware installed."""
        app = Starlette(routes=self.routes())
        install_knobs(app, self.faults, self.clock, on_reset=self.state.reset)
        app.state.weibo = self.state  # for in-process inspection
        return app

    # -- the API ------------------------------------------------------------------------------------

    @_api("share")
    async def share(self, request: Request) -> Response:
        """``POST /2/statuses/share.json``: length, safe-domain link, no topic, then the posting limits."""
        data = await _params(request)
        account = self.state.authorise(data.get("access_token"))
        text = _require(data, "status")
        _require(data, "rip")
        if weibo_rules.status_length(text) > weibo_rules.STATUS_MAX_CHARS:
            raise WeiboError(20012)
        links = weibo_rules.links(text)
        if not any(weibo_rules.on_safe_domain(link, domain) for link in links for domain in account.safe_domains):
            raise WeiboError(
                10017,
                MESSAGES[10017] % ("status", "a link on the app's safe domain", links[0] if links else "no link"),
            )
        if weibo_rules.has_topic(text):
            raise WeiboError(10017, MESSAGES[10017] % ("status", "no #topic#", "a #topic#"))
        status = self.state.post_status(account, text, interface="statuses/share")
        with self.state.lock:
            return JSONResponse(self.state.status_json(status))

    @_api("article")
    async def article_publish(self, request: Request) -> Response:
        """``POST /proxy/article/publish.json``: a 头条文章 and its bound status (HTTP 200 + ``code``)."""
        data = await _params(request)
        account = self.state.authorise(data.get("access_token"))
        if not account.long_article:
            raise WeiboError(10014, status=403)
        title = data.get("title") or ""
        content = unquote(data.get("content") or "")
        text = data.get("text") or ""
        for name in ("title", "content", "cover", "text", "rip"):
            if not (data.get(name) or "").strip():
                return _article_failure("10008", f"param {name} invalid")
        if len(title) > 32:
            return _article_failure("10008", "param title invalid")
        if len(content) > 90_000:
            return _article_failure("10008", "param content invalid")
        if weibo_rules.status_length(text) > 1900:
            return _article_failure("10008", "param text invalid")
        with self.state.lock:
            object_id = f"1022:{2_310_000_000_000_000 + len(self.state.articles) + 1}"
        try:
            status = self.state.post_status(account, text, interface="proxy/article/publish", article_id=object_id)
        except WeiboError as exc:
            if exc.code == 10024:
                return _article_failure("11001", "sass check error")
            return _article_failure("11002", "create statuses error")
        article = Article(
            object_id=object_id,
            uid=account.uid,
            title=title,
            content=content,
            cover=data.get("cover") or "",
            summary=data.get("summary") or "",
            mid=str(status.id),
            created_at=status.created_at,
        )
        with self.state.lock:
            self.state.articles[object_id] = article
        url = f"{sandbox_root(request)}/ttarticle/p/show?id={object_id}"
        return JSONResponse(
            {"code": "100000", "msg": "", "data": {"object_id": object_id, "url": url, "mid": article.mid}}
        )

    @_api("user_timeline")
    async def user_timeline(self, request: Request) -> Response:
        """``GET /2/statuses/user_timeline.json``: the user's live statuses, newest first, paged."""
        data = await _params(request)
        account = self.state.authorise(data.get("access_token"))
        uid = data.get("uid") or account.uid
        count = min(100, max(1, int(data.get("count") or 20)))
        page = max(1, int(data.get("page") or 1))
        with self.state.lock:
            mine = sorted(
                (s for s in self.state.statuses.values() if s.uid == uid and not s.deleted),
                key=lambda s: s.id,
                reverse=True,
            )
            chunk = mine[(page - 1) * count : page * count]
            return JSONResponse(
                {
                    "statuses": [self.state.status_json(s) for s in chunk],
                    "total_number": len(mine),
                    "hasvisible": False,
                }
            )

    @_api("show")
    async def show(self, request: Request) -> Response:
        """``GET /2/statuses/show.json``: one status (20101 when gone)."""
        data = await _params(request)
        self.state.authorise(data.get("access_token"))
        with self.state.lock:
            status = self.state.find_status(data.get("id"))
            return JSONResponse(self.state.status_json(status))

    @_api("count")
    async def count(self, request: Request) -> Response:
        """``GET /2/statuses/count.json``: engagement of up to 100 ids; deleted ones silently missing."""
        data = await _params(request)
        self.state.authorise(data.get("access_token"))
        ids = [i for i in _require(data, "ids").split(",") if i.strip()]
        if len(ids) > 100:
            raise WeiboError(20009)
        rows = []
        with self.state.lock:
            for raw in ids:
                try:
                    status = self.state.statuses.get(int(raw))
                except ValueError:
                    status = None
                if status is None or status.deleted:
                    continue  # Weibo leaves deleted ids out without a word
                rows.append({"id": status.id, **self.state.engagement(status)})
        return JSONResponse(rows)

    @_api("destroy")
    async def destroy(self, request: Request) -> Response:
        """``POST /2/statuses/destroy.json``: delete one of the user's own statuses (20102 otherwise)."""
        data = await _params(request)
        account = self.state.authorise(data.get("access_token"))
        with self.state.lock:
            status = self.state.find_status(_require(data, "id"))
            if status.uid != account.uid:
                raise WeiboError(20102, status=403)
            status.deleted = True
            return JSONResponse(self.state.status_json(status))

    @_api("comments_show")
    async def comments_show(self, request: Request) -> Response:
        """``GET /2/comments/show.json``: one status's comments, newest first, ``since_id`` / ``max_id``, paged."""
        data = await _params(request)
        self.state.authorise(data.get("access_token"))
        try:
            since = int(data.get("since_id") or 0)
            top = int(data.get("max_id") or 0)
            count = int(data.get("count") or 50)
            page = int(data.get("page") or 1)
        except ValueError:
            raise WeiboError(10008) from None
        if not 1 <= count <= 200 or page < 1:
            raise WeiboError(10017, MESSAGES[10017] % ("count", "1-200", count))
        with self.state.lock:
            status = self.state.find_status(_require(data, "id"))
            rows = [
                c
                for c in self.state.comments.get(status.id, [])
                if c.id > since and (not top or c.id <= top)  # since_id exclusive, max_id inclusive
            ]
            rows.sort(key=lambda c: c.id, reverse=True)
            chunk = rows[(page - 1) * count : page * count]
            status_json = self.state.status_json(status)
            comments = [
                {
                    "created_at": datetime.fromtimestamp(c.created_at, BEIJING).strftime("%a %b %d %H:%M:%S %z %Y"),
                    "id": c.id,
                    "idstr": str(c.id),
                    "mid": str(c.id),
                    "text": c.text,
                    "source": '<a href="https://weibo.com/" rel="nofollow">微博 weibo.com</a>',
                    "user": {"id": _reader_uid(c.author), "idstr": str(_reader_uid(c.author)), "screen_name": c.author},
                    "status": status_json,
                }
                for c in chunk
            ]
            return JSONResponse(
                {"comments": comments, "previous_cursor": 0, "next_cursor": 0, "total_number": len(rows)}
            )

    @_api("token_info")
    async def token_info(self, request: Request) -> Response:
        """``POST /oauth2/get_token_info``: the token's user and remaining lifetime."""
        data = await _params(request)
        account = self.state.authorise(data.get("access_token"))
        return JSONResponse(
            {
                "uid": int(account.uid),
                "appkey": "media-matrix-sandbox",
                "scope": "all",
                "create_at": int(account.created_at),
                "expire_in": int(account.expires_at - self.clock.now()),
            }
        )

    # -- pages --------------------------------------------------------------------------------------

    async def status_page(self, request: Request) -> Response:
        """``GET /<uid>/<id>``: a status as weibo.com shows it, t.cn links pointing at the originals."""
        uid, sid = request.path_params["uid"], request.path_params["sid"]
        with self.state.lock:
            try:
                status = self.state.statuses.get(int(sid))
            except ValueError:
                status = None
            if status is None or status.uid != uid:
                return _page("微博", "<p>该微博不存在</p>", 404)
            if status.deleted:
                return _page("微博", "<p>抱歉，此微博已被作者删除。</p>", 404)
            account = self.state.accounts.get(status.uid)
            counts = self.state.engagement(status)
            text = html.escape(status.text)
            for short, original in status.links.items():
                text = text.replace(
                    html.escape(short), f"<a href='{html.escape(original, quote=True)}'>{html.escape(short)}</a>"
                )
        name = html.escape(account.screen_name if account else uid)
        return _page(
            f"{name}的微博",
            f"<article><h1>{name}</h1><p class='text'>{text}</p>"
            f"<p class='counts'>转发 {counts['reposts']} · 评论 {counts['comments']} · 赞 {counts['attitudes']}</p>"
            "</article>",
        )

    async def article_page(self, request: Request) -> Response:
        """``GET /ttarticle/p/show?id=``: a long article, gone once its bound status is deleted."""
        with self.state.lock:
            article = self.state.articles.get(request.query_params.get("id", ""))
            gone = article is None or self.state.statuses.get(int(article.mid), None) is None
            if not gone and article is not None:
                gone = self.state.statuses[int(article.mid)].deleted
        if article is None or gone:
            return _page("头条文章", "<p>该文章不存在或已被删除</p>", 404)
        # The body was sanitised by the client; the sandbox shows it as Weibo would after its own filter.
        return _page(
            article.title,
            f"<article><h1>{html.escape(article.title)}</h1><p><img src='{html.escape(article.cover, quote=True)}'"
            f" alt='cover'></p><p class='summary'>{html.escape(article.summary)}</p>{article.content}</article>",
        )

    async def cover(self, request: Request) -> Response:
        """``GET /static/cover.png``: an image to use as a long article's cover."""
        return Response(SAMPLE_PNG, media_type="image/png")

    # -- control API --------------------------------------------------------------------------------

    async def control_accounts(self, request: Request) -> Response:
        """``POST /_sandbox/accounts``: register (or replace) an authorised user."""
        body = await _control_body(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        return JSONResponse(asdict(self.state.add_account(body)))

    async def control_revoke(self, request: Request) -> Response:
        """``POST /_sandbox/tokens/revoke``: revoke a token by ``access_token`` or ``uid`` (then 21332)."""
        body = await _control_body(request)
        if not isinstance(body, dict):
            body = {}
        revoked = []
        with self.state.lock:
            for account in self.state.accounts.values():
                if body.get("access_token") == account.access_token or str(body.get("uid")) == account.uid:
                    account.revoked = True
                    revoked.append(account.uid)
        if not revoked:
            return JSONResponse({"error": "no such token or uid"}, status_code=404)
        return JSONResponse({"revoked": revoked})

    async def control_comments(self, request: Request) -> Response:
        """``POST /_sandbox/comments``: readers comment on a live status now (texts given, or ``count``)."""
        body = await _control_body(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        with self.state.lock:
            try:
                status = self.state.find_status(str(body.get("id", "")))
            except WeiboError:
                return JSONResponse({"error": "no such live status"}, status_code=404)
            existing = self.state.comments.setdefault(status.id, [])
            try:
                samples = reader_comments.from_body(body, start=len(existing))
            except (SandboxError, TypeError, ValueError) as exc:
                return JSONResponse({"error": f"bad comments: {exc}"}, status_code=400)
            added = []
            for sample in samples:
                comment = StatusComment(self.state.next_id(), status.id, sample.author, sample.text, self.clock.now())
                existing.append(comment)
                added.append(asdict(comment))
        return JSONResponse(added, status_code=201)

    async def control_state(self, request: Request) -> Response:
        """``GET /_sandbox/state``: everything the sandbox holds."""
        return JSONResponse(self.state.snapshot())


def create_app(safe_domains: Iterable[str] | None = None) -> Starlette:
    """A fresh Weibo sandbox with its own state, clock and faults.

    ``safe_domains``: what accounts registered without their own get; by default :func:`demo_safe_domains`.
    """
    return WeiboSandbox(safe_domains).app()
