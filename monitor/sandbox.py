"""The feed sandbox: an ASGI app that serves RSSHub-shaped feeds of Chinese posts on a fake clock, and faults.

Any path is a feed route, as RSSHub's are (``/weibo/keyword/欠薪``, ``/wechat/mp/…``, ``/toutiao/user/…``): a
route nobody configured serves a normal day of its own, a few posts drawn from union and workers' topics
(欠薪, 加班, 社保, 工伤…) by a generator seeded with the route and the fake hour, so a thousand feeds need no
set-up. Every body carries an ``ETag`` and ``Last-Modified`` and answers 304 to a matching conditional GET.

Control API (JSON) under ``/_sandbox/``::

    POST reset                          forget everything
    GET  state                          per route: requests, 200s, 304s, items; the clock
    POST clock      {"advance_s": n}    move the fake clock
    POST items      {"route", "items": [{"title", "text", "guid"?, "link"?, "author"?}], "format"?}
    POST repost     {"routes": [...], "title", "text", "edits": true}   one story on many feeds, small edits
    POST burst      {"route", "title", "text", "count"}                 many retellings at once
    POST faults     {"route", "fault", "times"?, "status"?, "retry_after"?}

Faults: ``malformed``, ``entities`` (billion laughs), ``huge`` (100 MB, no length), ``huge_declared``
(Content-Length of 100 MB), ``trickle`` (a byte every 0.3 s), ``redirect_private`` (to a metadata address),
``redirect_loop``, ``not_feed`` (an HTML page), ``status`` (any code, with ``Retry-After``), and the encodings
``gbk_undeclared``, ``gbk_labelled_utf8``, ``utf8_labelled_latin1``; items with ``<script>`` are plain items.

It imports nothing of the monitor: a fake that shared the parser's code would agree with its bugs.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import random
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_TOPICS = [
    ("某电子厂拖欠{n}名工人三个月工资", "工人多次讨薪无果，厂方称资金周转困难，当地总工会已介入调查。"),
    ("快递网点员工反映长期强制加班", "员工称每天工作超过12小时，加班费都没有，希望有关部门关注。"),
    ("{city}调整社保缴费基数", "新的缴费基数自下月起执行，职工可通过社保APP查询个人缴费明细。"),
    ("建筑工人高处坠落受伤，工伤认定遇阻", "家属称用工单位拒不承认劳动关系，工伤认定迟迟办不下来。"),
    ("{city}总工会举办职工技能大赛", "本届大赛共设{n}个工种，优胜者将获得职业技能等级证书。"),
    ("外卖骑手社保谁来缴？", "平台称骑手为灵活就业人员，多位骑手表示希望参加职业伤害保障。"),
    ("困难职工送温暖活动启动", "{city}总工会将走访慰问困难职工{n}户，发放慰问金和生活物资。"),
    ("某公司裁员未支付经济补偿", "多名员工被口头辞退，公司拒绝签订解除合同协议，员工申请劳动仲裁。"),
    ("夏季高温津贴发放标准公布", "用人单位安排高温作业应当发放高温津贴，职工可向工会反映。"),
    ("职工法律援助服务站揭牌", "服务站为职工提供劳动争议调解和法律援助，帮助职工依法维权。"),
]
_CITIES = ["南京", "苏州", "无锡", "常州", "徐州", "南通", "扬州", "盐城"]
_BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
    + ']>\n<rss version="2.0"><channel><title>lolz</title><item><title>&lol9;</title></item></channel></rss>'
)
HUGE_BYTES = 100 * 1024 * 1024


@dataclass
class _Item:
    guid: str
    link: str
    title: str
    text: str
    author: str
    at: float


@dataclass
class _Feed:
    items: list[_Item] = field(default_factory=list)
    fmt: str = "rss"
    changed_at: float = 0.0
    configured: bool = False
    requests: int = 0
    ok: int = 0
    not_modified: int = 0


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.offset = 0.0
        self.feeds: dict[str, _Feed] = {}
        self.faults: dict[str, dict[str, Any]] = {}
        self.serial = 0

    def now(self) -> float:
        return time.time() + self.offset

    def feed(self, route: str) -> _Feed:
        if route not in self.feeds:
            self.feeds[route] = _Feed(changed_at=self._hour())
        feed = self.feeds[route]
        if not feed.configured:  # a normal day: the route's own posts for the fake hour
            feed.items = _normal_day(route, self._hour())
            feed.changed_at = max(feed.changed_at, self._hour())
        return feed

    def _hour(self) -> float:
        return float(int(self.now()) // 3600 * 3600)

    def add(self, route: str, title: str, text: str, **extra: Any) -> _Item:
        feed = self.feed(route)
        if not feed.configured:
            feed.configured, feed.items = True, []
        self.serial += 1
        uid = f"{zlib.crc32(route.encode()) % 10**6}{self.serial:06d}"
        link = extra.get("link") or f"https://weibo.com/{zlib.crc32(route.encode()) % 10**9}/{uid}"
        item = _Item(extra.get("guid") or link, link, title, text, extra.get("author") or "网友", self.now())
        feed.items.insert(0, item)
        feed.changed_at = self.now()
        return item


def _normal_day(route: str, hour: float) -> list[_Item]:
    rng = random.Random(f"{route}|{int(hour)}")  # noqa: S311 - fake content, not security
    items = []
    # three different topics: two posts of one topic can read the same and are then (rightly) stored once
    for k, (title, text) in enumerate(rng.sample(_TOPICS, 3)):
        fill = {"n": rng.randint(3, 300), "city": rng.choice(_CITIES)}
        uid = hashlib.sha1(f"{route}|{int(hour)}|{k}".encode()).hexdigest()[:12]  # noqa: S324 - an id
        link = f"https://weibo.com/{zlib.crc32(route.encode()) % 10**9}/{uid}"
        items.append(_Item(link, link, title.format(**fill), text.format(**fill), "网友", hour - k * 600))
    return items


def _edit(text: str, rng: random.Random) -> str:
    """A small edit, as reposts make: a prefix, changed punctuation, an appended tag."""
    choice = rng.randrange(4)
    if choice == 0:
        return "转发：" + text
    if choice == 1:
        return text.replace("，", ",", 1) + "！"
    if choice == 2:
        return text + " #关注劳动者权益#"
    return "【扩散】" + text.rstrip("。") + "。"


def _rss(route: str, feed: _Feed) -> str:
    items = "".join(
        "<item>"
        f"<title>{html.escape(i.title)}</title>"
        f"<description><![CDATA[<p>{html.escape(i.text)}</p>{_raw_html(i)}]]></description>"
        f"<pubDate>{format_datetime(datetime.fromtimestamp(i.at, UTC), usegmt=True)}</pubDate>"
        f'<guid isPermaLink="false">{html.escape(i.guid)}</guid>'
        f"<link>{html.escape(i.link)}</link>"
        f"<author>{html.escape(i.author)}</author>"
        "</item>"
        for i in feed.items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss xmlns:atom="http://www.w3.org/2005/Atom" version="2.0">'
        f"<channel><title>{html.escape(route)} - RSSHub</title><link>https://rsshub.app/{html.escape(route)}</link>"
        "<description>Made with love by RSSHub(https://github.com/DIYgod/RSSHub)</description>"
        f"<generator>RSSHub</generator><ttl>5</ttl>{items}</channel></rss>"
    )


def _raw_html(item: _Item) -> str:
    # item text given with markup (a script, an image with a handler) is served raw, as a hostile site would
    return item.text if "<" in item.text else ""


def _atom(route: str, feed: _Feed) -> str:
    entries = "".join(
        f"<entry><id>{html.escape(i.guid)}</id><title>{html.escape(i.title)}</title>"
        f'<link href="{html.escape(i.link)}"/><updated>{datetime.fromtimestamp(i.at, UTC).isoformat()}</updated>'
        f"<author><name>{html.escape(i.author)}</name></author>"
        f'<content type="html">{html.escape("<p>" + i.text + "</p>")}</content></entry>'
        for i in feed.items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{html.escape(route)}</title><id>urn:sandbox:{html.escape(route)}</id>{entries}</feed>"
    )


def _json_feed(route: str, feed: _Feed) -> str:
    return json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": route,
            "items": [
                {
                    "id": i.guid,
                    "url": i.link,
                    "title": i.title,
                    "content_html": f"<p>{i.text}</p>",
                    "date_published": datetime.fromtimestamp(i.at, UTC).isoformat(),
                    "authors": [{"name": i.author}],
                }
                for i in feed.items
            ],
        },
        ensure_ascii=False,
    )


_RENDER = {"rss": (_rss, "application/rss+xml"), "atom": (_atom, "application/atom+xml"),
           "json": (_json_feed, "application/feed+json")}  # fmt: skip


async def _huge() -> Any:
    chunk = b"<item><title>x</title></item>" * 2000
    sent = 0
    yield b'<?xml version="1.0"?><rss version="2.0"><channel>'
    while sent < HUGE_BYTES:
        yield chunk
        sent += len(chunk)
        await asyncio.sleep(0)


async def _trickle() -> Any:
    for ch in b'<?xml version="1.0"?><rss version="2.0"><channel><title>slow</title>' * 10:
        yield bytes([ch])
        await asyncio.sleep(0.3)


def create_app() -> Starlette:
    """The feed sandbox as one ASGI app (state in the app, reset with ``POST /_sandbox/reset``)."""
    state = _State()

    async def control(request: Request) -> Response:
        action = request.path_params["action"]
        body = await request.json() if request.method == "POST" and await request.body() else {}
        with state.lock:
            if action == "reset":
                state.reset()
                return JSONResponse({"ok": True})
            if action == "state":
                return JSONResponse(
                    {
                        "now": state.now(),
                        "feeds": {
                            r: {
                                "requests": f.requests,
                                "ok": f.ok,
                                "not_modified": f.not_modified,
                                "items": len(f.items),
                            }
                            for r, f in state.feeds.items()
                        },
                        "faults": state.faults,
                    }
                )
            if action == "clock":
                state.offset += float(body.get("advance_s", 0))
                return JSONResponse({"now": state.now()})
            if action == "items":
                route = body["route"].strip("/")
                for it in body.get("items", []):
                    extra = {k: v for k, v in it.items() if k in ("guid", "link", "author")}
                    state.add(route, it["title"], it.get("text", ""), **extra)
                if body.get("format"):
                    state.feed(route).fmt = body["format"]
                return JSONResponse({"items": len(state.feed(route).items)})
            if action == "repost":
                rng = random.Random(body.get("seed", 7))  # noqa: S311 - fake content
                made = []
                for k, route in enumerate(body["routes"]):
                    text = body["text"] if k == 0 or not body.get("edits", True) else _edit(body["text"], rng)
                    made.append(state.add(route.strip("/"), body["title"], text).guid)
                return JSONResponse({"guids": made})
            if action == "burst":
                rng = random.Random(body.get("seed", 11))  # noqa: S311 - fake content
                for _ in range(int(body.get("count", 10))):
                    state.add(body["route"].strip("/"), body["title"], _edit(body["text"], rng))
                return JSONResponse({"items": len(state.feed(body["route"].strip("/")).items)})
            if action == "faults":
                state.faults[body["route"].strip("/")] = dict(body)
                return JSONResponse({"ok": True})
        return JSONResponse({"error": f"unknown action {action}"}, status_code=404)

    async def serve(request: Request) -> Response:
        route = request.path_params["route"].strip("/")
        with state.lock:
            feed = state.feed(route)
            feed.requests += 1
            fault = state.faults.get(route)
            if fault is not None and fault.get("times") is not None:
                fault["times"] -= 1
                if fault["times"] < 0:
                    state.faults.pop(route)
                    fault = None
            render, ctype = _RENDER.get(feed.fmt, _RENDER["rss"])
            body = render(route, feed)
            changed = feed.changed_at
        if fault is not None:
            response = _fault(request, route, fault, body)
            if response is not None:
                return response
        etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:20] + '"'
        last_modified = format_datetime(datetime.fromtimestamp(int(changed), UTC), usegmt=True)
        since = request.headers.get("if-modified-since")
        fresh = request.headers.get("if-none-match") == etag
        if not fresh and since and "if-none-match" not in request.headers:
            try:
                fresh = parsedate_to_datetime(since).timestamp() >= int(changed)
            except (TypeError, ValueError):
                fresh = False
        headers = {"ETag": etag, "Last-Modified": last_modified, "Cache-Control": "max-age=300"}
        with state.lock:
            if fresh:
                feed.not_modified += 1
            else:
                feed.ok += 1
        if fresh:
            return Response(status_code=304, headers=headers)
        return Response(body.encode(), media_type=f"{ctype}; charset=utf-8", headers=headers)

    return Starlette(
        routes=[
            Route("/_sandbox/{action}", control, methods=["GET", "POST"]),
            Route("/{route:path}", serve, methods=["GET"]),
        ]
    )


def _fault(request: Request, route: str, fault: dict[str, Any], body: str) -> Response | None:
    kind = fault["fault"]
    xml = "application/rss+xml"
    if kind == "malformed":
        return Response(b'<?xml version="1.0"?><rss version="2.0"><channel><item><title>unclosed', media_type=xml)
    if kind == "entities":
        return Response(_BILLION_LAUGHS.encode(), media_type=xml)
    if kind == "huge":
        return StreamingResponse(_huge(), media_type=xml)
    if kind == "huge_declared":
        return Response(b"<rss/>", media_type=xml, headers={"Content-Length": str(HUGE_BYTES)})
    if kind == "trickle":
        return StreamingResponse(_trickle(), media_type=xml)
    if kind == "redirect_private":
        return Response(status_code=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    if kind == "redirect_loop":
        return Response(status_code=302, headers={"Location": str(request.url)})
    if kind == "not_feed":
        return Response("<!doctype html><html><body>登录后查看</body></html>", media_type="text/html")
    if kind == "status":
        headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
        return Response(b"", status_code=int(fault.get("status", 503)), headers=headers)
    if kind == "gbk_undeclared":
        return Response(body.replace('encoding="UTF-8"', "").encode("gbk"), media_type="application/xml")
    if kind == "gbk_labelled_utf8":
        return Response(body.encode("gbk"), media_type=f"{xml}; charset=utf-8")
    if kind == "utf8_labelled_latin1":
        text = body.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
        return Response(text.encode("utf-8"), headers={"Content-Type": "text/xml; charset=iso-8859-1"})
    return None
