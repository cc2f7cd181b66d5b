"""Weibo (微博) adapter: a short status linking to the post's website copy, or a long article (头条文章).

Protocol (``https://api.weibo.com``; errors are HTTP 4xx with ``{"request", "error_code", "error"}``):

- ``POST /2/statuses/share.json`` (form ``access_token``, ``status``, ``rip``) → a status object
  ``{id, idstr, mid, text, …}``. The text must stay within 140 Chinese characters and must contain a link
  on the app's registered safe domain ("安全域名"), else 10017; it must not contain ``#topic#``.
  (open.weibo.com/wiki/2/statuses/share)
- ``POST /proxy/article/publish.json`` for accounts with long articles enabled (government, media and
  institution accounts): ``title`` ≤ 32, ``content`` ≤ 90,000 (rawurlencoded), ``cover``, ``summary``,
  ``text`` ≤ 1,900 (the short status bound to the article), ``rip`` → HTTP 200 with
  ``{"code": "100000", "data": {object_id, url, mid}}`` or another code (open.weibo.com/wiki/Toutiao/api).
- ``GET /2/statuses/user_timeline.json`` (reconciliation), ``GET /2/statuses/count.json?ids=`` (≤ 100 ids;
  deleted ones are silently missing), ``GET /2/statuses/show.json``, ``POST /2/statuses/destroy.json``,
  ``POST /oauth2/get_token_info``.
- ``GET /2/comments/show.json?id=<status id>&since_id=&max_id=&count=≤200&page=`` → ``{comments: [{id, idstr,
  created_at, text, user: {screen_name}}], total_number}``, newest first (open.weibo.com/wiki/2/comments/show).

Tokens: web apps get no refresh token, so an expired or revoked token (21327, 21332, the OAuth1-era
21314–21317, 21319, 21301) is :class:`NeedsReauth`: a person must authorise the account again. 21501 is
*not* an auth error on Weibo ("Urls is null", a parameter error) and is mapped as such.

Length: Weibo counts in half-width units: an ASCII character is half a Chinese character, a character
outside the BMP (most emoji) counts two, and every link is shortened to a t.cn address that costs ten
Chinese characters whatever its length (up to 140 half-width units; longer links cost their excess on top).
That rule is the one Sina's own web counter applies, as reproduced by the WeCase client
(``TweetUtils.tweetLength``) and described in "Weibo Character Count" (schappo.blogspot.com, 2012).

Idempotency: Weibo has no idempotency key. The link carries ours in its query string (``?mm=<key>``) so
the text stays clean, and the exact text we sent is saved in ``progress`` before the call; ``lookup``
scans the user's timeline for it. Because Weibo rewrites links to t.cn addresses in the stored text, the
match compares the texts with every link removed (and, where the platform keeps the original address in
the status, the marker too).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx

from channels.base import (
    Channel,
    Comment,
    CommentBatch,
    DeliveryContext,
    ErrorCode,
    Metrics,
    PostContent,
    PublishResult,
    Rendered,
    StatusResult,
    as_error_code,
    register,
)
from channels.errors import (
    ChannelError,
    ContentRejected,
    InvalidRequest,
    NeedsReauth,
    OutcomeUnknown,
    RateLimited,
    Unavailable,
)
from channels.manual import first_paragraph, render_article
from channels.render import truncate

API_ROOT = "https://api.weibo.com"
WEB_ROOT = "https://weibo.com"

STATUS_MAXLEN = 140  # Chinese characters (280 half-width units)
ARTICLE_TEXT_MAXLEN = 1900
ARTICLE_TITLE_MAXLEN = 32
ARTICLE_BODY_MAXLEN = 90_000
SHORT_URL_UNITS = 20  # half-width units one t.cn link costs
LONG_URL_THRESHOLD = 140  # half-width units of a link beyond which its excess counts too
MARKER_PARAM = "mm"
ARTICLE_PATH = "/proxy/article/publish.json"
ARTICLE_OK = "100000"
COMMENTS_PER_PAGE = 200  # comments/show's largest count

# A link runs until whitespace or CJK punctuation (Chinese text often follows a link without a space).
URL_RE = re.compile(r"https?://[^\s\u3000-\u303f\uff00-\uffef\u2018-\u201f<>\"]+")


def _units(text: str) -> int:
    return sum(1 if ord(ch) < 0x80 else (2 if ord(ch) <= 0xFFFF else 4) for ch in text)


def weibo_length(text: str) -> int:
    """Length of ``text`` as Weibo counts it, in Chinese characters (see the module docstring)."""
    units = 0
    position = 0
    for match in URL_RE.finditer(text):
        units += _units(text[position : match.start()])
        url_units = _units(match.group())
        units += SHORT_URL_UNITS + max(0, url_units - LONG_URL_THRESHOLD)
        position = match.end()
    units += _units(text[position:])
    return math.ceil(units / 2)


def strip_links(text: str) -> str:
    """``text`` without its links and with whitespace collapsed (compares a sent text with a stored one)."""
    return " ".join(URL_RE.sub(" ", text or "").split())


def with_marker(url: str, key: str) -> str:
    """``url`` with ``mm=<key>`` in its query string (replacing an earlier marker)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != MARKER_PARAM]
    query.append((MARKER_PARAM, key))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _host_of(value: str) -> str:
    value = (value or "").strip().lower()
    if "//" not in value:
        value = "//" + value
    return (urlsplit(value).hostname or "").rstrip(".")


def on_safe_domain(url: str, safe_domain: str) -> bool:
    """True if ``url``'s host is ``safe_domain`` (a host or a URL) or one of its subdomains."""
    host, domain = _host_of(url), _host_of(safe_domain)
    return bool(host and domain) and (host == domain or host.endswith("." + domain))


def _no_topics(text: str) -> str:
    # share.json refuses "#话题词#"; a full-width sign reads the same and is not a topic marker.
    return text.replace("#", "＃")


@register
class Weibo(Channel):
    """Weibo statuses (and long articles) for one user authorised through OAuth2.

    ``credentials``: ``access_token``, ``uid``. ``config``: ``base_url`` (default the real API),
    ``safe_domain`` (the app's registered domain; the website must live there), ``rip`` (the acting
    user's real IP, required by share.json), ``long_article`` (bool: post a 头条文章 with a bound status
    instead of a short status), ``default_cover`` (cover for long articles whose post has no image).
    """

    kind = "weibo"
    display_name = "微博"
    credential_fields = ("access_token", "uid")
    title_maxlen = ARTICLE_TITLE_MAXLEN
    summary_maxlen = 120
    body_maxlen = ARTICLE_BODY_MAXLEN
    rate_per_second = 2.0
    posts_per_hour = 30  # per user per app; enforced by the service before the platform refuses
    # 10,000 calls an hour from one server IP (普通授权, open.weibo.com "接口访问频次权限"; past it 10022)
    ip_limit = (10_000, 3600.0)
    needs_website_link = True
    supports_comments = True

    # Errors are HTTP 4xx (or 5xx) with {"request", "error_code", "error"}; the long-article endpoint
    # answers HTTP 200 with {"code", "msg"} instead (see _error_fields).
    ERROR_BODY_ON = "any"
    ERROR_CODE_KEYS = ("error_code",)
    ERROR_MESSAGE_KEYS = ("error",)
    # Every error code we act on. Keys are Weibo's numbers (the long-article endpoint sends them as
    # strings; they are compared as ints). Anything unlisted: 5xx -> Unavailable, 4xx -> InvalidRequest.
    ERROR_MAP: ClassVar[Mapping[ErrorCode, type[ChannelError]]] = {
        # system level (1xxxx)
        10001: Unavailable,  # system error (also the long-article endpoint's)
        10002: Unavailable,  # service unavailable
        10003: Unavailable,  # remote service error
        10004: InvalidRequest,  # IP limit: this server may not call the resource
        10008: InvalidRequest,  # parameter error (also the long-article endpoint's "param xxx invalid")
        10009: Unavailable,  # too many pending tasks, system busy
        10010: OutcomeUnknown,  # job expired: the platform gave up waiting, the write may have happened
        10011: Unavailable,  # RPC error
        10012: InvalidRequest,  # illegal request
        10013: NeedsReauth,  # invalid weibo user: the account itself is unusable until a person acts
        10014: InvalidRequest,  # the app lacks permission for this interface (e.g. long articles not enabled)
        10016: InvalidRequest,  # missing required parameter
        10017: InvalidRequest,  # parameter value invalid (e.g. no link on the safe domain)
        10022: RateLimited,  # IP requests out of rate limit
        10023: RateLimited,  # user requests out of rate limit
        10024: RateLimited,  # user requests for this interface out of rate limit (posting)
        # service level (2xxxx)
        20012: InvalidRequest,  # text too long (our rendering should have prevented it)
        20016: RateLimited,  # posting too often
        20017: ContentRejected,  # similar content
        20018: ContentRejected,  # contains an illegal website
        20019: ContentRejected,  # repeat content: the same text was posted already
        20020: ContentRejected,  # contains advertising
        20021: ContentRejected,  # illegal content
        20101: InvalidRequest,  # target weibo does not exist (retract/status treat it as "gone")
        20102: InvalidRequest,  # not your own weibo
        20111: ContentRejected,  # repeated weibo text
        21301: NeedsReauth,  # auth failed
        21314: NeedsReauth,  # token used
        21315: NeedsReauth,  # token expired
        21316: NeedsReauth,  # token revoked
        21317: NeedsReauth,  # token rejected
        21319: NeedsReauth,  # the user removed the app's authorisation
        21327: NeedsReauth,  # expired_token
        21332: NeedsReauth,  # invalid_access_token
        21501: InvalidRequest,  # "Urls is null": a parameter error, not an auth error, on Weibo
        # long-article endpoint (HTTP 200, code in the body)
        11001: RateLimited,  # "sass check error": publishing too often
        11002: Unavailable,  # "create statuses error": the bound status was not created, nothing is live
        11003: OutcomeUnknown,  # "bind error": article and status may both exist, unbound; look first
    }

    # -- plumbing ---------------------------------------------------------------------------------

    @classmethod
    def base_url(cls, account: Any) -> str:
        """``config['base_url']`` (a sandbox) or the real API root."""
        return str(account.config.get("base_url") or API_ROOT).rstrip("/")

    @property
    def _token(self) -> str:
        token = self.account.credentials.get("access_token")
        if not token:
            raise NeedsReauth("the Weibo account has no access token")
        return str(token)

    @property
    def _uid(self) -> str:
        return str(self.account.credentials.get("uid") or "")

    @property
    def _web_root(self) -> str:
        # A sandbox serves the API and the status pages at one root; the real platform does not.
        base = self.base_url(self.account)
        return WEB_ROOT if base == API_ROOT else base

    def _error_fields(self, response: httpx.Response, body: Any) -> tuple[ErrorCode | None, str]:
        """``error_code``/``error``; on the long-article endpoint also ``code``/``msg`` other than 100000."""
        code, message = super()._error_fields(response, body)
        if code is None and isinstance(body, Mapping) and response.request.url.path.endswith(ARTICLE_PATH):
            if str(body.get("code", ARTICLE_OK)) != ARTICLE_OK:
                return as_error_code(body.get("code")), str(body.get("msg") or "")
        return code, message

    def _rip(self) -> str:
        rip = str(self.account.config.get("rip") or "").strip()
        if not rip:
            raise InvalidRequest("config 'rip' (the acting user's real IP) is required by Weibo's share API")
        return rip

    def status_url(self, status_id: str, uid: str | None = None) -> str:
        """The public page of a status: ``https://weibo.com/<uid>/<id>`` (or the sandbox's page)."""
        return f"{self._web_root}/{uid or self._uid}/{status_id}"

    # -- render -----------------------------------------------------------------------------------

    def render(self, content: PostContent, *, link: str | None = None) -> Rendered:
        """The short status ``【title】summary <link>`` within 140 Chinese characters, plus the article.

        ``text`` is the status (or, in long-article mode, the status bound to the article, ≤ 1,900);
        ``html`` the article body for long-article mode. ``link`` is required: Weibo refuses a status
        without a link on the safe domain.
        """
        if not link:
            raise InvalidRequest("a Weibo status needs the post's website URL (the delivery must wait for it)")
        article = render_article(content, title_maxlen=ARTICLE_TITLE_MAXLEN, summary_maxlen=self.summary_maxlen)
        long_article = bool(self.account.config.get("long_article"))
        limit = ARTICLE_TEXT_MAXLEN if long_article else STATUS_MAXLEN
        title = _no_topics(" ".join(content.title.split()))
        summary = _no_topics(" ".join((content.summary or first_paragraph(content.body)).split()))
        text = _fit_status(title, summary, link, limit)
        return Rendered(
            title=article.title,
            html=article.html,
            text=text,
            summary=article.summary,
            cover_url=article.cover_url or self.account.config.get("default_cover") or None,
            images=article.images,
        )

    # -- operations -------------------------------------------------------------------------------

    def check_credentials(self) -> None:
        """Ask Weibo about the token; an expired or revoked one raises :class:`NeedsReauth`."""
        response = self.request("POST", "/oauth2/get_token_info", data={"access_token": self._token})
        info = _json(response) or {}
        if isinstance(info, dict) and int(info.get("expire_in", 1) or 0) <= 0:
            raise NeedsReauth("the Weibo access token has expired", code=21327)

    def publish(self, ctx: DeliveryContext) -> PublishResult:
        """Post the status (or long article); the status id is saved the moment it is returned."""
        done = self._from_progress(ctx)
        if done is not None:
            return done
        if not ctx.depends_on_url:
            raise InvalidRequest("a Weibo status needs the post's website URL (the delivery must wait for it)")
        link = with_marker(ctx.depends_on_url, ctx.idempotency_key)
        safe_domain = str(self.account.config.get("safe_domain") or "")
        if safe_domain and not on_safe_domain(link, safe_domain):
            # Weibo would answer 10017; say so before spending a call (and an hourly slot).
            raise InvalidRequest(
                f"the link {ctx.depends_on_url} is not on the app's safe domain {safe_domain}", code=10017
            )
        rendered = self.render(ctx.content, link=link)
        if self.account.config.get("long_article"):
            return self._publish_article(ctx, rendered, link)
        rip = self._rip()
        # What we are about to send, so that lookup can recognise it if the answer is lost.
        ctx.save(status_text=rendered.text, link=link)
        try:
            response = self.request(
                "POST",
                "/2/statuses/share.json",
                data={"access_token": self._token, "status": rendered.text, "rip": rip},
            )
        except ContentRejected as exc:
            # Our text carries this delivery's own marker, so "repeat content" can only mean an earlier
            # attempt of this very delivery landed (its answer lost): find it instead of failing.
            if exc.code == 20019:
                found = self.lookup(ctx)
                if found is not None:
                    return found
            raise
        status = _json(response)
        if not isinstance(status, dict) or not (status.get("idstr") or status.get("id")):
            raise OutcomeUnknown("weibo accepted the status but its answer carries no id")
        idstr = str(status.get("idstr") or status.get("id"))
        ctx.save(idstr=idstr, mid=str(status.get("mid") or idstr))
        return PublishResult(remote_id=idstr, state="published", url=self.status_url(idstr))

    def _publish_article(self, ctx: DeliveryContext, rendered: Rendered, link: str) -> PublishResult:
        if not rendered.cover_url:
            raise InvalidRequest("a Weibo long article needs a cover: give the post an image or set default_cover")
        if len(rendered.html) > ARTICLE_BODY_MAXLEN:
            raise InvalidRequest(f"the article is longer than Weibo's {ARTICLE_BODY_MAXLEN:,} characters")
        rip = self._rip()
        ctx.save(status_text=rendered.text, link=link)
        response = self.request(
            "POST",
            ARTICLE_PATH,
            data={
                "access_token": self._token,
                "title": rendered.title,
                # The API wants the body rawurlencoded (PHP rawurlencode: spaces as %20) inside the form.
                "content": quote(rendered.html, safe=""),
                "cover": rendered.cover_url,
                "summary": rendered.summary,
                "text": rendered.text,
                "rip": rip,
            },
        )
        data = (_json(response) or {}).get("data") or {}
        mid = str(data.get("mid") or "")
        if not mid:
            raise OutcomeUnknown("weibo accepted the article but its answer carries no status id")
        ctx.save(idstr=mid, mid=mid, object_id=str(data.get("object_id") or ""), article_url=data.get("url"))
        return PublishResult(remote_id=mid, state="published", url=str(data.get("url") or self.status_url(mid)))

    def _from_progress(self, ctx: DeliveryContext) -> PublishResult | None:
        idstr = ctx.progress.get("idstr")
        if not idstr:
            return None
        url = ctx.progress.get("article_url") or self.status_url(str(idstr))
        return PublishResult(remote_id=str(idstr), state="published", url=str(url))

    def status(self, ctx: DeliveryContext) -> StatusResult:
        """``published`` while the status exists, ``retracted`` once it is gone (20101)."""
        status_id = ctx.remote_id or ctx.progress.get("idstr")
        if not status_id:
            return StatusResult(state="pending")
        try:
            self.request("GET", "/2/statuses/show.json", params={"access_token": self._token, "id": status_id})
        except InvalidRequest as exc:
            if exc.code == 20101:
                return StatusResult(state="retracted", reason="the status no longer exists on Weibo")
            raise
        url = ctx.progress.get("article_url") or self.status_url(str(status_id))
        return StatusResult(state="published", url=str(url))

    def lookup(self, ctx: DeliveryContext, *, pages: int = 3) -> PublishResult | None:
        """Find our status on the user's own timeline (newest ``pages`` × 100), by marker or exact text."""
        done = self._from_progress(ctx)
        if done is not None:
            return done
        sent = ctx.progress.get("status_text")
        if not sent:
            if not ctx.depends_on_url:
                return None
            sent = self.render(ctx.content, link=with_marker(ctx.depends_on_url, ctx.idempotency_key)).text
        wanted = strip_links(str(sent))
        marker = f"{MARKER_PARAM}={ctx.idempotency_key}"
        for page in range(1, pages + 1):
            response = self.request(
                "GET",
                "/2/statuses/user_timeline.json",
                params={"access_token": self._token, "uid": self._uid, "count": 100, "page": page},
            )
            statuses = (_json(response) or {}).get("statuses") or []
            for status in statuses:
                if _matches(status, wanted, marker):
                    idstr = str(status.get("idstr") or status.get("id"))
                    ctx.save(idstr=idstr, mid=str(status.get("mid") or idstr))
                    return PublishResult(remote_id=idstr, state="published", url=self.status_url(idstr))
            if len(statuses) < 100:
                break
        return None

    def metrics(self, ctxs: Iterable[DeliveryContext]) -> dict[int, Metrics]:
        """Comments, reposts (shares) and attitudes (likes) from ``statuses/count`` in batches of 100.

        Reads are not reported (only a paid commercial API has them). Deleted statuses are silently
        missing from Weibo's answer, so they are missing from ours.
        """
        by_id: dict[str, list[int]] = {}
        for ctx in ctxs:
            status_id = ctx.remote_id or ctx.progress.get("idstr")
            if status_id:
                by_id.setdefault(str(status_id), []).append(ctx.delivery_id)
        ids = list(by_id)
        result: dict[int, Metrics] = {}
        for start in range(0, len(ids), 100):
            batch = ids[start : start + 100]
            response = self.request(
                "GET", "/2/statuses/count.json", params={"access_token": self._token, "ids": ",".join(batch)}
            )
            for row in _json(response) or []:
                for delivery_id in by_id.get(str(row.get("id")), []):
                    result[delivery_id] = Metrics(
                        reads=None,
                        likes=_int(row.get("attitudes")),
                        shares=_int(row.get("reposts")),
                        comments=_int(row.get("comments")),
                    )
        return result

    def comments(
        self, ctx: DeliveryContext, cursor: Mapping[str, Any] | None = None, *, limit: int = 500
    ) -> CommentBatch:
        """``comments/show`` of our status after ``since_id``; a status gone (20101) ends the batch ``gone``.

        Weibo lists newest first and has no ascending order, so a read cut short by ``limit`` leaves a gap
        (``{"max_id", "top"}`` in the cursor: the comments from ``since_id`` up to ``max_id`` are still to be
        read, ``top`` the newest one read) that the next call fills before ``since_id`` moves on to ``top``.
        """
        cursor = dict(cursor or {})
        status_id = ctx.remote_id or ctx.progress.get("idstr")
        if not status_id:
            return CommentBatch([], cursor)
        since = int(cursor.get("since_id") or 0)
        gap = cursor.get("gap") if isinstance(cursor.get("gap"), dict) else None
        params: dict[str, Any] = {"access_token": self._token, "id": status_id, "count": COMMENTS_PER_PAGE}
        if since:
            params["since_id"] = since
        if gap:
            params["max_id"] = int(gap["max_id"])
        found: list[Comment] = []
        page, exhausted = 1, False
        while len(found) < limit:
            try:
                response = self.request("GET", "/2/comments/show.json", params={**params, "page": page})
            except InvalidRequest as exc:
                if exc.code == 20101:  # the status was deleted: its comments went with it
                    return CommentBatch(found, cursor, gone=True)
                raise
            rows = [r for r in (_json(response) or {}).get("comments") or [] if isinstance(r, Mapping)]
            for row in rows:
                comment_id = int(row.get("idstr") or row.get("id") or 0)
                if comment_id <= since or (gap and comment_id > int(gap["max_id"])):
                    continue  # since_id/max_id are honoured by Weibo; checked again so a repeat cannot slip in
                found.append(self._comment(row, str(status_id)))
                if len(found) >= limit:
                    break
            if len(rows) < COMMENTS_PER_PAGE:
                exhausted = len(found) < limit or len(rows) == 0
                break
            page += 1
        ids = [int(c.id) for c in found]
        top = int(gap["top"]) if gap else max(ids, default=since)
        if exhausted or not ids:
            return CommentBatch(found, {"since_id": max(top, since)})
        return CommentBatch(found, {"since_id": since, "gap": {"max_id": min(ids) - 1, "top": top}})

    def _comment(self, row: Mapping[str, Any], status_id: str) -> Comment:
        idstr = str(row.get("idstr") or row.get("id"))
        user = row.get("user") if isinstance(row.get("user"), Mapping) else {}
        created = None
        try:
            created = datetime.strptime(str(row.get("created_at") or ""), "%a %b %d %H:%M:%S %z %Y").astimezone(UTC)
        except ValueError:
            created = None
        return Comment(
            id=idstr,
            guid=f"weibo:comment:{idstr}",  # Weibo's comment ids are unique across the platform
            text=str(row.get("text") or ""),
            author=str(user.get("screen_name") or ""),
            created_at=created,
            link=self.status_url(status_id),
        )

    def retract(self, ctx: DeliveryContext) -> None:
        """Delete the status (``statuses/destroy``); one that is already gone counts as retracted.

        In long-article mode this deletes the status bound to the article; the article object has no
        public delete API.
        """
        status_id = ctx.remote_id or ctx.progress.get("idstr")
        if not status_id:
            return
        try:
            self.request("POST", "/2/statuses/destroy.json", data={"access_token": self._token, "id": status_id})
        except InvalidRequest as exc:
            if exc.code != 20101:
                raise


# ------------------------------------------------------------------------------------------ helpers


def _fit_status(title: str, summary: str, link: str, limit: int) -> str:
    """``【title】summary link`` cut (summary first, then title) so that Weibo counts ≤ ``limit``."""

    def compose(title_part: str, summary_part: str) -> str:
        head = f"【{title_part}】" if title_part else ""
        return f"{head}{summary_part} {link}".strip()

    if weibo_length(compose(title, "")) <= limit:
        return compose(title, truncate(summary, limit, measure=lambda s: weibo_length(compose(title, s))))
    if weibo_length(link) <= limit:
        return compose(truncate(title, limit, measure=lambda t: weibo_length(compose(t, ""))), "")
    raise InvalidRequest("the website link alone is longer than a Weibo status allows")


def _matches(status: Mapping[str, Any], wanted: str, marker: str) -> bool:
    text = str(status.get("text") or "")
    if marker in text:
        return True
    # Where the platform keeps the original address (url_struct / long_url), the marker is there.
    for item in status.get("url_struct") or []:
        if isinstance(item, Mapping) and marker in str(item.get("ori_url") or item.get("long_url") or ""):
            return True
    return bool(wanted) and strip_links(text) == wanted


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
