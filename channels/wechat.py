"""WeChat Official Account (公众号) adapter: draft/add → freepublish/submit, polled with freepublish/get.

Protocol facts: ``/work/shared/docs/channel-apis.md`` (WeChat section). Every reply is HTTP 200; an error
is ``{"errcode": N, "errmsg": "…"}`` and :data:`WeChatChannel.ERROR_MAP` turns N into our exception tree.

Publishing is asynchronous and takes several calls; each remote id is saved (``ctx.save``) the moment it
is returned, so a retry resumes instead of repeating::

    body images ── media/uploadimg ──► progress["images"][src] = mmbiz URL   (outside images are stripped)
    cover ──────── material/add_material?type=image ──► progress["thumb_media_id"]
                   (no cover: the app's default cover, uploaded once and shared, see "Default cover" below)
    draft/add ──► progress["media_id"]
    progress["submit_started_at"] (before the call: a lost answer is told apart from "never sent")
    freepublish/submit ──► progress["publish_id"], progress["msg_data_id"]  → awaiting_confirmation
                           (40007 for a draft an earlier attempt submitted: OutcomeUnknown, never a failure)
    freepublish/get (reconcile) ──► 0 published (article_id, article_url) | 1 pending | 2/3/4 failed
                                    | 5/6 retracted by the platform

Idempotency key: WeChat has none, so ours travels in the article's ``content_source_url`` (阅读原文, the
link to the website copy) as the query parameter ``mm_key=<key>``: invisible in the article body, kept
by the platform and returned by ``freepublish/batchget`` and ``draft/batchget``, where :meth:`lookup`
finds it. (The digest would show the key to readers.) An account without any link base (no website
copy and no ``config["source_url"]``) has no ``content_source_url``; lookup then falls back to the
title, which is weaker and documented as such.

A submit whose answer was lost (``media_id`` and ``submit_started_at`` saved, no ``publish_id``) is never
submitted again on time alone. WeChat lists only finished articles, so :meth:`WeChatChannel.lookup` also
asks the draft box (``draft/get``): a draft that has left it was submitted — it is still being published, or
it was published and removed — and the delivery waits for the article to be listed (:class:`OutcomeUnknown`),
up to ``unlisted_after_s`` (then it was removed: see "Removed articles" below); only a draft still in the box,
with nothing listed after ``submit_grace_s``, is submitted again (the earlier request never landed, or its
publishing failed and the draft came back).

Default cover: ``draft/add`` needs a ``thumb_media_id``, and a post without a cover gets the packaged default
PNG. It is a *permanent* material (``material/add_material``), so uploading it for every delivery cost a platform
call each time and filled the app's permanent-material quota with copies of one image. Its ``media_id`` is kept
per app in the shared token cache (key ``wechat-cover:<appid>:<digest of the PNG>``, single-flight, in Redis or
the database in production), so the app's workers upload it once. The cache is only a cache: a miss uploads
again. A cached ``media_id`` the platform no longer knows (deleted in the console, or of a sandbox that was
reset) is refused by ``draft/add`` with 40007 "invalid media_id", which added nothing: the entry is replaced (one
upload across all workers) and ``draft/add`` is called once more. ``progress["default_cover"]`` marks a
``thumb_media_id`` that came from the cache, so a resumed attempt replaces it the same way.

Removed articles: an article deleted by the account or banned by the platform is still found by :meth:`lookup`
(publishing it again would defy the removal), but it is reported ``awaiting_confirmation``, never ``published``:
the status check that follows asks ``freepublish/get`` (5/6) or ``freepublish/getarticle`` (``is_deleted``,
53600) and the delivery ends ``retracted``. A lost submit whose draft left the draft box and that is still not
listed ``unlisted_after_s`` (default a day) after the submit — longer than publishing takes — was submitted
and is not on the platform: it was removed (a removed article that the published list no longer returns, or
returns without our key) and ends ``retracted`` the same way, instead of being looked for forever.

Comments (留言): ``POST /cgi-bin/comment/list {msg_data_id, index, begin, count ≤ 50, type: 0}`` → ``{total,
comment: [{user_comment_id, openid, create_time, content, comment_type}]}``; ``index`` counts the articles of a
message from 0 (freepublish's ``idx`` from 1). Its own codes (88000 no comment privilege, 88001 the message does
not exist, 88002 the article is limited for safety, 88010 count out of range) are all permanent, which is what
an unmapped code on an HTTP 200 already is (:class:`InvalidRequest`, the code kept); 88001 ends the batch
``gone``. The list is read from ``begin`` in the order the platform keeps (oldest first, as the sandbox does: the
public documentation does not say); :meth:`WeChatChannel.comments` starts one page before where it stopped and
keeps only ids above the highest it saw, so a few deleted comments shifting the positions lose none.

Tokens: ``POST /cgi-bin/stable_token`` through the shared single-flight cache (:mod:`channels.tokens`),
key ``wechat:<appid>``. A reply 40001/40014/42001 (token invalid / not the latest / expired) makes the
adapter report the token as stale to the cache (one refresh across all workers) and repeat the call
once; a second rejection fails the attempt with :class:`TokenRejected` (an :class:`Unavailable`: the
credential itself worked a moment ago, so a later retry is the right response, not re-authorisation).

Platform time: the sandbox runs a fake clock and real WeChat counts days in Asia/Shanghai, so "today"
(T+1 metrics, the 45009 pause until the next day) is taken from the platform's own ``Date`` header.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlparse, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import httpx

from channels import render
from channels.base import (
    AccountInfo,
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
    make_client,
    register,
)
from channels.errors import (
    ChannelError,
    ContentRejected,
    InvalidRequest,
    NeedsReauth,
    OutcomeUnknown,
    QuotaExhausted,
    RateLimited,
    Unavailable,
)
from channels.media import PNG, ImageType, asset_bytes
from channels.tokens import TokenCache, default_token_cache

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_BASE_URL = "https://api.weixin.qq.com"

# Limits. Title ≤ 64 and digest ≤ 120 characters are the mp.weixin.qq.com editor's rules (图文消息标题
# "不超过64字", 摘要 "不能超过120个汉字或字符"), and WeChat's developer community answers that draft/add
# enforces the same limits as the web editor (developers.weixin.qq.com/community/develop/doc/
# 000a6406c10910304f000c32561c00, "和公众号后台限制一致"). Content: < 20,000 characters and < 1 MB,
# no JavaScript (draft/add documentation, via channel-apis.md). Body images for uploadimg: jpg/png < 1 MB.
TITLE_MAX = 64
DIGEST_MAX = 120
CONTENT_MAX_CHARS = 20_000
CONTENT_MAX_BYTES = 1_000_000
BODY_IMAGE_MAX_BYTES = 1_000_000
COVER_MAX_BYTES = 10_000_000
BODY_IMAGE_TYPES = frozenset({"png", "jpeg"})  # media/uploadimg
COVER_TYPES = frozenset({"png", "jpeg", "gif", "bmp"})  # material/add_material?type=image
COMMENTS_PER_PAGE = 50  # comment/list's largest count
# A permanent material never expires; the entry's age bound only lets a cache forget a media_id nobody refused.
# A refused one (40007) is replaced at once (see "Default cover" in the module docstring).
DEFAULT_COVER_TTL_S = 30 * 86400
# How long after a lost submit whose draft left the draft box the article may take to be listed: WeChat publishes
# in minutes (review included), so still unlisted a day later, it was published and removed.
UNLISTED_AFTER_S = 86400.0

# freepublish/get publish_status → (our state, the platform's reason in words)
PUBLISH_STATUS: dict[int, tuple[str, str | None]] = {
    0: ("published", None),
    1: ("pending", None),
    2: ("failed", "原创声明失败 (originality check failed)"),
    3: ("failed", "常规失败 (publishing failed)"),
    4: ("failed", "平台审核不通过 (rejected by platform review)"),
    5: ("retracted", "成功后用户删除所有文章 (deleted by the account)"),
    6: ("retracted", "成功后系统封禁所有文章 (banned by the platform)"),
}


class TokenRejected(Unavailable):
    """The platform rejected a fresh access token too (40001/40014/42001 twice in a row): retry later."""


# --------------------------------------------------------------------------------------- render

# What a WeChat article body may contain: plain structure and formatting, links and images. The shared
# renderer (nh3/ammonia allow-list) already drops scripts, event handlers and javascript: links; this
# narrower list also drops what WeChat's editor cannot show (forms, iframes, styles …).
_ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "b", "em", "i", "u", "s", "del",
    "blockquote", "ul", "ol", "li", "pre", "code", "a", "img", "table", "thead", "tbody", "tr", "th",
    "td", "span", "section", "sup", "sub", "figure", "figcaption",
}  # fmt: skip


def _truncate(text: str, limit: int) -> str:
    return render.truncate(" ".join(text.split()), limit)


def markdown_to_wechat_html(markdown: str) -> str:
    """Markdown → sanitised HTML for a WeChat article: no scripts, no event handlers, no styles."""
    return render.sanitize_html(render.markdown_to_html(markdown), tags=_ALLOWED_TAGS)


def default_cover_png() -> bytes:
    """A plain 900x383 PNG in WeChat green (the 2.35:1 cover ratio) for posts without a cover.

    ``draft/add`` requires ``thumb_media_id``. A static file shipped in the package
    (``channels/assets/default_cover.png``), so no image library or encoder is needed.
    """
    return asset_bytes("default_cover.png")


def with_key(url: str, key: str) -> str:
    """``url`` with ``mm_key=<key>`` added to its query (our idempotency key, see the module docstring)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"mm_key": key})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def key_of(url: str | None) -> str | None:
    """Our idempotency key from a ``content_source_url``, if it carries one."""
    if not url:
        return None
    values = parse_qs(urlparse(url).query).get("mm_key")
    return values[-1] if values else None


def msgid_from_article_url(url: str | None) -> tuple[str, int] | None:
    """``(msg_data_id, idx)`` from an article URL (``…/s?__biz=…&mid=<msg_data_id>&idx=<idx>&sn=…``).

    Used when the submit's answer was lost and the article was found by :meth:`WeChatChannel.lookup`:
    the URL's ``mid`` is the message id that datacube's ``msgid`` ("<msg_data_id>_<idx>") is made of.
    """
    if not url:
        return None
    query = parse_qs(urlparse(url).query)
    if "mid" in query:
        return query["mid"][0], int((query.get("idx") or ["1"])[0])
    return None


# -------------------------------------------------------------------------------------- adapter


#: How long an adapter reuses the token it last read from the shared cache without reading it again
TOKEN_REUSE_S = 60.0


@register
class WeChatChannel(Channel):
    """A WeChat Official Account. Credentials ``{"appid", "secret"}``; config ``base_url``, ``source_url``.

    Optional config: ``source_url`` (the organisation's site, the 阅读原文 link when a post has no website
    copy), ``author``, ``need_open_comment`` (default 1), ``submit_grace_s`` (how long a submit whose
    answer was lost may take to show up in freepublish/batchget before it is assumed not to have
    happened; default 600), ``unlisted_after_s`` (how long such a submit, its draft gone from the draft box, may
    stay unlisted before it counts as removed; default 86400), ``lookup_pages`` (pages of 20 scanned by lookup;
    default 5).
    """

    kind: ClassVar[str] = "wechat"
    display_name: ClassVar[str] = "WeChat Official Account"
    credential_fields: ClassVar[tuple[str, ...]] = ("appid", "secret")
    title_maxlen: ClassVar[int] = TITLE_MAX
    summary_maxlen: ClassVar[int] = DIGEST_MAX
    body_maxlen: ClassVar[int] = CONTENT_MAX_CHARS
    rate_per_second: ClassVar[float] = 10.0
    asynchronous: ClassVar[bool] = True
    supports_comments: ClassVar[bool] = True

    # Every reply is HTTP 200; an error is {"errcode": N, "errmsg": "…"}. An HTTP error status comes from
    # something in front of the API and is mapped by the status alone.
    ERROR_BODY_ON = "success"
    ERROR_CODE_KEYS = ("errcode",)
    ERROR_MESSAGE_KEYS = ("errmsg",)
    quota_timezone = SHANGHAI
    ERROR_MAP: ClassVar[Mapping[ErrorCode, type[ChannelError]]] = {
        -1: Unavailable,  # system busy: retry
        40001: TokenRejected,  # access token invalid (e.g. a newer one was issued): refresh once
        40014: TokenRejected,  # access token not the latest: refresh once
        42001: TokenRejected,  # access token expired: refresh once
        40013: NeedsReauth,  # invalid AppID: the account's credentials are wrong
        40125: NeedsReauth,  # invalid AppSecret: a person must enter the current one
        40164: NeedsReauth,  # caller IP not whitelisted: a person must add it in the mp console
        45009: QuotaExhausted,  # daily API quota reached: pause the account until the next day
        45011: RateLimited,  # per-minute quota reached: back off
        48001: InvalidRequest,  # API not authorised for this account (unverified account, …)
        40007: InvalidRequest,  # invalid media_id
        44003: InvalidRequest,  # empty news (no article / empty content)
        45003: InvalidRequest,  # title too long
        47001: InvalidRequest,  # data format error
        61501: InvalidRequest,  # date range error (datacube)
        53600: InvalidRequest,  # invalid article_id (freepublish/delete; retract treats it as gone)
        40005: InvalidRequest,  # invalid file type (uploadimg takes jpg/png)
        40009: InvalidRequest,  # invalid image size
        41005: InvalidRequest,  # media data missing
        45002: InvalidRequest,  # content size out of limit
        45004: InvalidRequest,  # digest (description) size out of limit
        53502: InvalidRequest,  # invalid publish_id
        45166: ContentRejected,  # invalid content (scripts, forbidden markup)
        53503: ContentRejected,  # the draft failed the platform's publish check
    }

    def __init__(
        self,
        account: AccountInfo,
        client: httpx.Client | None = None,
        *,
        limiter: Any | None = None,
        token_cache: TokenCache | None = None,
        timeout: float = 20.0,
    ) -> None:
        super().__init__(
            account, client, limiter=limiter, token_cache=token_cache or default_token_cache(), timeout=timeout
        )
        self._platform_clock: tuple[float, float] | None = None  # (platform epoch, local monotonic) at last reply
        self._fetcher: httpx.Client | None = None
        # The token this adapter last had from the shared cache: one adapter serves one delivery (seconds), and a
        # WeChat delivery makes four or five calls, each of which read and decrypted it from the cache again.
        # A token the platform rejects is handed back as ``stale`` and replaced through the cache as before; one
        # older than a minute is read again (an adapter kept longer sees a token another worker refreshed).
        self._last_token: tuple[str, float] | None = None

    @classmethod
    def base_url(cls, account: AccountInfo) -> str:
        return str(account.config.get("base_url") or DEFAULT_BASE_URL)

    # -- credentials and tokens --------------------------------------------------------------------

    @property
    def appid(self) -> str:
        try:
            return str(self.account.credentials["appid"])
        except KeyError:
            raise NeedsReauth("wechat account has no appid in its credentials") from None

    def _fetch_token(self, force: bool, stale: str | None) -> tuple[str, float]:
        """One stable_token call (two if the platform hands back the rejected token and ``force``)."""
        secret = self.account.credentials.get("secret")
        if not secret:
            raise NeedsReauth("wechat account has no secret in its credentials")
        body = {"grant_type": "client_credential", "appid": self.appid, "secret": secret, "force_refresh": False}
        # Without force_refresh stable_token returns the token the platform holds as current; a token
        # that expired (42001) is already replaced there, so no force is needed. force_refresh is
        # rationed (20 a day, 30 s apart): used only if the platform still hands out the rejected token.
        data = self._json(self._send("POST", "/cgi-bin/stable_token", idempotent=True, json=body))
        if force and data.get("access_token") == stale:
            body["force_refresh"] = True
            data = self._json(self._send("POST", "/cgi-bin/stable_token", idempotent=True, json=body))
        try:
            return str(data["access_token"]), float(data.get("expires_in", 7200))
        except KeyError:
            raise Unavailable("wechat stable_token answered without access_token") from None

    def _token(self, stale: str | None = None) -> str:
        if stale is None and self._last_token is not None and time.monotonic() - self._last_token[1] < TOKEN_REUSE_S:
            return self._last_token[0]
        token = self.token_cache.get(f"wechat:{self.appid}", lambda force: self._fetch_token(force, stale), stale=stale)
        self._last_token = (token, time.monotonic())
        return token

    # -- the HTTP layer ------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any) -> httpx.Response:
        try:
            return self.request(method, path, **kwargs)
        except OutcomeUnknown as exc:
            if idempotent:
                # A read (or a token fetch) has no effect to be unsure about: just retry it later.
                raise Unavailable(f"{exc.message} (read-only call)", code=exc.code) from exc
            raise

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        return response.json()  # _check has verified it is a JSON object

    def _api(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        method: str = "POST",
        idempotent: bool = False,
        params: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call an API with the account's token; on a token error refresh once (shared) and repeat once.

        Repeating is safe even for writes: a call refused for its token never reached the operation.
        """
        stale: str | None = None
        for attempt in (1, 2):
            token = self._token(stale)
            kwargs: dict[str, Any] = {"params": {**(params or {}), "access_token": token}}
            if files is not None:
                kwargs["files"] = files
            elif body is not None:
                # WeChat wants UTF-8 characters as they are; ensure_ascii escapes are not decoded everywhere.
                kwargs["content"] = _dumps(body)
                kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
            try:
                return self._json(self._send(method, path, idempotent=idempotent, **kwargs))
            except TokenRejected as exc:
                if attempt == 2:
                    raise TokenRejected(
                        f"wechat rejected a freshly fetched access token too ({exc.message})",
                        code=exc.code,
                        retry_after=30.0,
                    ) from exc
                stale = token
        raise AssertionError("unreachable")

    def _check(self, response: httpx.Response) -> None:
        # Every reply, errors included, carries the platform's Date: note it before mapping.
        self._note_platform_time(response)
        super()._check(response)

    def _error_fields(self, response: httpx.Response, body: Any) -> tuple[ErrorCode | None, str]:
        # The API always answers a JSON object; anything else came from something in between.
        if not isinstance(body, Mapping):
            raise Unavailable("wechat answered with a body that is not a JSON object")
        return super()._error_fields(response, body)

    def _retry_after(self, code: ErrorCode | None, response: httpx.Response | None) -> float | None:
        if code == 45011:
            # the per-minute quota frees up at the next minute (of the platform's clock)
            return 61.0 - self.platform_now() % 60
        if code == -1:
            return 2.0  # -1 is "系统繁忙，请稍候再试": busy, try again in a moment
        return super()._retry_after(code, response)

    # -- platform time ---------------------------------------------------------------------------------

    def _note_platform_time(self, response: httpx.Response) -> None:
        # uvicorn adds its own Date first; a sandbox with a fake clock appends its own after it.
        values = response.headers.get_list("date")
        if not values:
            return
        try:
            stamp = parsedate_to_datetime(values[-1]).timestamp()
        except (TypeError, ValueError):
            return
        self._platform_clock = (stamp, time.monotonic())

    def platform_now(self) -> float:
        """The platform's current time (epoch seconds), from its last ``Date`` header, else ours."""
        if self._platform_clock is None:
            return time.time()
        stamp, at = self._platform_clock
        return stamp + (time.monotonic() - at)

    def platform_today(self) -> date:
        """Today in Asia/Shanghai on the platform's clock (asks the platform if it has not answered yet)."""
        if self._platform_clock is None:
            # get_api_domain_ip is cheap and harmless; any reply carries the platform's Date.
            self._api("/cgi-bin/get_api_domain_ip", method="GET", idempotent=True)
        return datetime.fromtimestamp(self.platform_now(), SHANGHAI).date()

    # -- operations ------------------------------------------------------------------------------------

    def check_credentials(self) -> None:
        """A stable_token call with these very credentials, then one authenticated call; 40125/40164/40013
        raise :class:`NeedsReauth`.

        The first call bypasses the shared token cache: it may hold a token that other (older, right)
        credentials of the same appid fetched, which would let a wrong secret pass. Without force_refresh,
        stable_token invalidates nothing.
        """
        self._fetch_token(False, None)
        self._api("/cgi-bin/get_api_domain_ip", method="GET", idempotent=True)

    def render(self, content: PostContent, *, link: str | None = None) -> Rendered:
        """The article: title ≤ 64, digest ≤ 120, sanitised HTML body within WeChat's size limits.

        Raises :class:`ContentRejected` for a body too large for WeChat (cutting an article short
        silently would publish something the reviewer never approved).
        """
        title = _truncate(content.title, TITLE_MAX)
        if not title:
            raise InvalidRequest("a WeChat article needs a title")
        body = markdown_to_wechat_html(content.body)
        text = render.html_to_text(body)
        if not text and "<img" not in body:
            raise InvalidRequest("a WeChat article needs a body")
        if len(body) >= CONTENT_MAX_CHARS or len(body.encode()) >= CONTENT_MAX_BYTES:
            raise ContentRejected(
                f"article body is {len(body):,} characters of HTML; WeChat takes fewer than {CONTENT_MAX_CHARS:,}"
            )
        summary = render.summarize(content.summary, text, DIGEST_MAX)
        return Rendered(
            title=title,
            html=body,
            text=text,
            summary=summary,
            cover_url=content.cover_url,
            images=tuple(render.image_urls(body)),
        )

    def source_url(self, ctx: DeliveryContext) -> str:
        """The article's 阅读原文 link carrying our idempotency key ("" when there is no link base)."""
        base = ctx.depends_on_url or self.account.config.get("source_url") or ""
        return with_key(str(base), ctx.idempotency_key) if base else ""

    def publish(self, ctx: DeliveryContext) -> PublishResult:
        """Upload images and cover, add the draft, submit it; resumes from ``ctx.progress``."""
        progress = ctx.progress
        if progress.get("publish_id"):
            # Submitted by an earlier attempt: never submit twice; status() settles it.
            return PublishResult(remote_id=str(progress["publish_id"]), state="awaiting_confirmation")
        media_id = progress.get("media_id")
        if not media_id:
            media_id = self._add_draft(ctx)
        submitted_before = progress.get("submit_started_at") is not None
        ctx.save(submit_started_at=time.time())
        try:
            data = self._api("/cgi-bin/freepublish/submit", {"media_id": media_id})
        except InvalidRequest as exc:
            if exc.code == 40007 and submitted_before:
                # Our own draft, which an earlier attempt sent to this very call: "invalid media_id" means it
                # has left the draft box, i.e. that submit landed. Failing the delivery would hide a live (or
                # soon live) article; submitting anew would publish it twice. Look it up instead.
                raise OutcomeUnknown(
                    "wechat: the draft was already submitted by an earlier attempt (40007 for its media_id); "
                    "looking it up instead",
                    code=exc.code,
                ) from exc
            raise
        publish_id = str(data["publish_id"])
        ctx.save(publish_id=publish_id, msg_data_id=str(data.get("msg_data_id", "")))
        return PublishResult(remote_id=publish_id, state="awaiting_confirmation")

    def _add_draft(self, ctx: DeliveryContext) -> str:
        rendered = self.render(ctx.content)
        images: dict[str, str] = dict(ctx.progress.get("images") or {})
        for src in rendered.images:
            if src not in images:
                images[src] = self._upload_body_image(src)
                ctx.save(images=dict(images))
        thumb = ctx.progress.get("thumb_media_id")
        with_draft: dict[str, Any] = {}
        if not thumb:
            if rendered.cover_url:
                thumb = self._upload_cover(rendered.cover_url)
                ctx.save(thumb_media_id=thumb)
            else:
                # The app's cached default cover: an attempt after a crash finds it again at no cost, so it is
                # saved with the draft's id (one progress save, one transaction, fewer per delivery).
                thumb = self.default_cover_media_id()
                with_draft = {"thumb_media_id": thumb, "default_cover": True}
                ctx.progress.update(with_draft)
        article = {
            "title": rendered.title,
            "author": _truncate(ctx.content.author or str(self.account.config.get("author", "")), 16),
            "digest": rendered.summary,
            "content": render.replace_image_urls(rendered.html, images),
            "content_source_url": self.source_url(ctx),
            "thumb_media_id": thumb,
            "need_open_comment": int(self.account.config.get("need_open_comment", 1)),
            "only_fans_can_comment": 0,
        }
        try:
            data = self._api("/cgi-bin/draft/add", {"articles": [article]})
        except InvalidRequest as exc:
            if exc.code != 40007 or not ctx.progress.get("default_cover"):
                raise
            # The cached default cover is no material of this app any more (deleted, a sandbox reset): draft/add
            # added nothing, so replace the cache entry (once across workers) and add the draft once more.
            thumb = self.default_cover_media_id(stale=thumb)
            with_draft["thumb_media_id"] = thumb
            ctx.save(**with_draft)
            data = self._api("/cgi-bin/draft/add", {"articles": [{**article, "thumb_media_id": thumb}]})
        media_id = str(data["media_id"])
        ctx.save(media_id=media_id, **with_draft)
        return media_id

    # -- images --------------------------------------------------------------------------------------

    def _image(self, src: str, *, what: str, max_bytes: int, types: frozenset[str]) -> tuple[bytes, ImageType]:
        """An image referenced by the post (http(s) URL or ``data:`` URI), downloaded by a client of its own:
        the API client carries the account's token in its requests' queries, an image host gets nothing."""
        if self._fetcher is None:
            self._fetcher = make_client(timeout=self.timeout, policy=self.policy)
        return self.download_image(src, what=what, max_bytes=max_bytes, types=types, client=self._fetcher)

    def _upload_body_image(self, src: str) -> str:
        data, kind = self._image(src, what="body image", max_bytes=BODY_IMAGE_MAX_BYTES, types=BODY_IMAGE_TYPES)
        files = {"media": (f"image.{kind.extension}", data, kind.mime)}
        return str(self._api("/cgi-bin/media/uploadimg", files=files)["url"])

    def _upload_cover(self, cover_url: str | None) -> str:
        """A cover as a new permanent image material: the post's own (one per delivery: each post has its own),
        or with ``None`` the default PNG uploaded anew (deliveries use the cached :meth:`default_cover_media_id`)."""
        if cover_url:
            data, kind = self._image(cover_url, what="cover", max_bytes=COVER_MAX_BYTES, types=COVER_TYPES)
        else:
            data, kind = default_cover_png(), PNG
        return self._add_material(data, kind)

    def _add_material(self, data: bytes, kind: ImageType) -> str:
        files = {"media": (f"cover.{kind.extension}", data, kind.mime)}
        result = self._api("/cgi-bin/material/add_material", params={"type": "image"}, files=files)
        return str(result["media_id"])

    def default_cover_media_id(self, stale: str | None = None) -> str:
        """The ``media_id`` of the app's default cover: uploaded once per app and kept in the shared token cache.

        ``stale``: a ``media_id`` the platform refused (40007); unless another worker has replaced it already,
        the cover is uploaded again (once across all workers) and the cache entry replaced.
        """
        png = default_cover_png()
        key = f"wechat-cover:{self.appid}:{hashlib.sha256(png).hexdigest()[:16]}"
        return self.token_cache.get(
            key, lambda _force: (self._add_material(png, PNG), DEFAULT_COVER_TTL_S), stale=stale, count_refresh=False
        )

    # -- status, lookup ------------------------------------------------------------------------------

    def status(self, ctx: DeliveryContext) -> StatusResult:
        """freepublish/get: 0 published (article id and URL saved), 1 pending, 2-4 failed, 5/6 retracted."""
        publish_id = ctx.progress.get("publish_id")
        if not publish_id:
            if ctx.progress.get("article_id"):
                return self._article_status(ctx)
            if ctx.progress.get("unlisted_since"):
                return self._unlisted_status(ctx)
            raise InvalidRequest("this delivery was never submitted to WeChat (no publish_id)")
        data = self._api("/cgi-bin/freepublish/get", {"publish_id": publish_id}, idempotent=True)
        if "publish_status" not in data:
            raise Unavailable("wechat freepublish/get answered without publish_status")
        code = int(data["publish_status"])
        state, reason = PUBLISH_STATUS.get(code, ("failed", f"unknown publish_status {code}"))
        if code == 0 or data.get("article_id"):
            self._save_article(ctx, data)
        if state == "failed" and data.get("fail_idx"):
            reason = f"{reason}; failed articles: {data['fail_idx']}"
        return StatusResult(state=state, url=ctx.progress.get("article_url"), reason=reason)

    def _save_article(self, ctx: DeliveryContext, data: Mapping[str, Any]) -> None:
        items = (data.get("article_detail") or {}).get("item") or []
        update: dict[str, Any] = {}
        if data.get("article_id") and ctx.progress.get("article_id") != data["article_id"]:
            update["article_id"] = str(data["article_id"])
        if items:
            update["idx"] = int(items[0].get("idx", 1))
            update["article_url"] = items[0].get("article_url")
        if not ctx.progress.get("published_on"):
            update["published_on"] = self.platform_today().isoformat()
        if update:
            ctx.save(**update)

    def _article_status(self, ctx: DeliveryContext) -> StatusResult:
        """The state of an article found by lookup (we know its article_id but no publish_id)."""
        try:
            data = self._api(
                "/cgi-bin/freepublish/getarticle", {"article_id": ctx.progress["article_id"]}, idempotent=True
            )
        except InvalidRequest as exc:
            if exc.code == 53600:
                return StatusResult("retracted", url=ctx.progress.get("article_url"), reason="article is gone")
            raise
        items = data.get("news_item") or []
        if items and items[0].get("is_deleted"):
            return StatusResult("retracted", url=ctx.progress.get("article_url"), reason="article was deleted")
        return StatusResult("published", url=ctx.progress.get("article_url"))

    def _unlisted_status(self, ctx: DeliveryContext) -> StatusResult:
        """The state of a submit that landed but was never listed (see "Removed articles" in the module
        docstring): listed after all → as listed; still not → removed from the platform."""
        found = self._find_published(ctx)
        if found is not None:
            return self._article_status(ctx)
        waited = time.time() - float(ctx.progress["submit_started_at"])
        return StatusResult(
            "retracted",
            reason=(
                f"submitted (its draft left the draft box) but not listed among the published articles "
                f"{waited / 3600:.0f} h later: removed from the platform"
            ),
        )

    def lookup(self, ctx: DeliveryContext) -> PublishResult | None:
        """Find this delivery on WeChat, so a retry never publishes twice.

        * publish_id saved: the submit happened; its state comes from :meth:`status` (never None).
        * otherwise, the published articles (freepublish/batchget) are scanned for our key: found →
          published; found but deleted or banned → awaiting_confirmation, and :meth:`status` reports it
          retracted (a removed copy is never recorded as live, nor posted again).
        * media_id saved and a submit may have been sent (its answer lost): the draft box decides, since
          WeChat lists only finished articles. Draft gone: that submit landed and is still publishing (or
          was published and removed) → :class:`OutcomeUnknown` (look again later), never a second submit;
          still unlisted ``unlisted_after_s`` after the submit, it was removed → awaiting_confirmation, and
          :meth:`status` reports it retracted. Draft still there: within ``submit_grace_s`` of the submit
          :class:`OutcomeUnknown` too; after it, None, and publish submits the same draft (the earlier
          request never landed, or failed).
        * nothing saved: the draft box is scanned for our key; a draft found is adopted (media_id saved)
          so publish resumes from it instead of adding a second draft. Returns None.
        """
        progress = ctx.progress
        if progress.get("publish_id"):
            state = self.status(ctx)
            result_state = "published" if state.state == "published" else "awaiting_confirmation"
            return PublishResult(remote_id=str(progress["publish_id"]), state=result_state, url=state.url)
        found = self._find_published(ctx)
        if found is not None:
            return found
        if progress.get("media_id"):
            started = progress.get("submit_started_at")
            if started is None:
                return None  # never submitted: publish resumes from the draft
            if not self._draft_in_box(str(progress["media_id"])):
                unlisted_after = float(self.account.config.get("unlisted_after_s", UNLISTED_AFTER_S))
                if time.time() - float(started) >= unlisted_after:
                    # Publishing takes minutes: submitted a day ago and still not listed, it was removed (a
                    # removed article the list leaves out, or returns without our key). The status check ends it.
                    ctx.save(unlisted_since=time.time())
                    return PublishResult(remote_id=str(progress["media_id"]), state="awaiting_confirmation")
                raise OutcomeUnknown(
                    "the submit's answer was lost and its draft has left the draft box: it was submitted and is "
                    "not listed yet (still publishing, or removed); never submitted again, looking again later"
                )
            grace = float(self.account.config.get("submit_grace_s", 600))
            if time.time() - float(started) < grace:
                raise OutcomeUnknown(
                    "the submit's answer was lost and the article is not listed yet; looking again later"
                )
            return None
        media_id = self._find_draft(ctx)
        if media_id:
            ctx.save(media_id=media_id)
        return None

    def _matches(self, ctx: DeliveryContext, item: Mapping[str, Any]) -> bool:
        key = key_of(item.get("content_source_url"))
        if key is not None:
            return key == ctx.idempotency_key
        # no link base: the title is all we can go by (see the module docstring)
        return not self.source_url(ctx) and item.get("title") == _truncate(ctx.content.title, TITLE_MAX)

    def _scan(self, path: str) -> Iterable[dict[str, Any]]:
        pages = int(self.account.config.get("lookup_pages", 5))
        for page in range(pages):
            data = self._api(path, {"offset": page * 20, "count": 20, "no_content": 1}, idempotent=True)
            items = data.get("item") or []
            yield from items
            if len(items) < 20 or (page + 1) * 20 >= int(data.get("total_count", 0)):
                return

    def _find_published(self, ctx: DeliveryContext) -> PublishResult | None:
        for item in self._scan("/cgi-bin/freepublish/batchget"):
            for idx, news in enumerate((item.get("content") or {}).get("news_item") or [], start=1):
                # A deleted or banned article still counts as found: it was published, and publishing it
                # again would defy the removal. It is not live, though: awaiting_confirmation sends the
                # delivery to its status check, where status() reports it retracted (the engine's final
                # state for a removed copy); "published" recorded a removed copy as live.
                if not self._matches(ctx, news):
                    continue
                url = news.get("url")
                update: dict[str, Any] = {"article_id": str(item["article_id"]), "article_url": url, "idx": idx}
                parsed = msgid_from_article_url(url)
                if parsed and not ctx.progress.get("msg_data_id"):
                    update["msg_data_id"] = parsed[0]
                if item.get("update_time"):
                    update["published_on"] = (
                        datetime.fromtimestamp(int(item["update_time"]), SHANGHAI).date().isoformat()
                    )
                ctx.save(**update)
                state = "awaiting_confirmation" if news.get("is_deleted") else "published"
                return PublishResult(remote_id=str(item["article_id"]), state=state, url=url)
        return None

    def _draft_in_box(self, media_id: str) -> bool:
        """Whether our draft is still in the draft box (``draft/get``; 40007: it is not, as once submitted)."""
        try:
            self._api("/cgi-bin/draft/get", {"media_id": media_id}, idempotent=True)
        except InvalidRequest as exc:
            if exc.code == 40007:
                return False
            raise
        return True

    def _find_draft(self, ctx: DeliveryContext) -> str | None:
        for item in self._scan("/cgi-bin/draft/batchget"):
            for news in (item.get("content") or {}).get("news_item") or []:
                if self._matches(ctx, news):
                    return str(item["media_id"])
        return None

    # -- metrics, retract ------------------------------------------------------------------------------

    def metrics(self, ctxs: Iterable[DeliveryContext]) -> dict[int, Metrics]:
        """datacube/getarticletotaldetail per publish date (T+1: a day not over yet on the platform is skipped).

        Joined on msgid ``<msg_data_id>_<idx>``; each article's latest ``stat_date`` row holds the totals
        from its publish date to that day. Deliveries without data yet are left out of the result.
        """
        wanted: dict[str, dict[str, int]] = {}  # publish date -> msgid -> delivery id
        for ctx in ctxs:
            msg, on = ctx.progress.get("msg_data_id"), ctx.progress.get("published_on")
            if not msg:
                parsed = msgid_from_article_url(ctx.progress.get("article_url"))
                msg = parsed[0] if parsed else None
            if msg and on:
                wanted.setdefault(on, {})[f"{msg}_{int(ctx.progress.get('idx', 1))}"] = ctx.delivery_id
        if not wanted:
            return {}
        result: dict[int, Metrics] = {}
        retry: dict[str, dict[str, int]] = {}
        for on in sorted(wanted):
            if not self._collect(on, wanted[on], result):
                continue
            missing = {msgid: did for msgid, did in wanted[on].items() if did not in result}
            if missing:
                # published_on is the platform's date when status() first saw the article; a status poll
                # just after midnight dates an article of 23:59 a day late, so look one day earlier too.
                earlier = (date.fromisoformat(on) - timedelta(days=1)).isoformat()
                retry.setdefault(earlier, {}).update(missing)
        for on in sorted(retry):
            self._collect(on, retry[on], result)
        return result

    def _collect(self, on: str, wanted: Mapping[str, int], result: dict[int, Metrics]) -> bool:
        """Fill ``result`` from one publish date's datacube rows; False if the platform has no data yet."""
        try:
            data = self._api("/datacube/getarticletotaldetail", {"begin_date": on, "end_date": on}, idempotent=True)
        except InvalidRequest as exc:
            if exc.code == 61501:
                # T+1: the platform (whose clock is the one that counts) has no data for that day yet
                return False
            raise
        for article in data.get("list") or []:
            delivery_id = wanted.get(str(article.get("msgid")))
            details = article.get("detail_list") or []
            if delivery_id is None or not details:
                continue
            latest = max(details, key=lambda d: str(d.get("stat_date", "")))
            result[delivery_id] = Metrics(
                reads=_int(latest.get("read_user")),
                likes=_int(latest.get("like_user")),
                shares=_int(latest.get("share_user")),
                comments=_int(latest.get("comment_count")),
            )
        return True

    def retract(self, ctx: DeliveryContext) -> None:
        """freepublish/delete of our article; idempotent (gone, never published or failed: nothing to do)."""
        if not ctx.progress.get("article_id"):
            if ctx.progress.get("publish_id"):
                state = self.status(ctx)
                if state.state == "pending":
                    # Not a failure: the caller retries with its backoff (which a fixed wait would override)
                    # and deletes the article as soon as it has settled.
                    raise Unavailable("the article is still being published; retract it once it has settled")
                if state.state != "published":
                    return  # failed or already removed
            else:
                found = self.lookup_published(ctx)
                if found is None or found.state != "published":
                    return  # never published, or removed from the platform already
        try:
            self._api(
                "/cgi-bin/freepublish/delete",
                {"article_id": ctx.progress["article_id"], "index": int(ctx.progress.get("idx", 1))},
            )
        except InvalidRequest as exc:
            if exc.code != 53600:  # invalid article_id: it is gone already
                raise

    def comments(
        self, ctx: DeliveryContext, cursor: Mapping[str, Any] | None = None, *, limit: int = 500
    ) -> CommentBatch:
        """``comment/list`` of our article from the cursor (``{"begin", "max_id"}``); 88001 ends it ``gone``."""
        cursor = dict(cursor or {})
        msg = ctx.progress.get("msg_data_id")
        idx = int(ctx.progress.get("idx", 1))
        if not msg:
            parsed = msgid_from_article_url(ctx.progress.get("article_url"))
            msg, idx = parsed if parsed else (None, idx)
        if not msg:
            return CommentBatch([], cursor)
        max_id = int(cursor.get("max_id") or 0)
        begin = max(0, int(cursor.get("begin") or 0) - COMMENTS_PER_PAGE)  # one page back: see the module docstring
        found: list[Comment] = []
        while len(found) < limit:
            body = {"msg_data_id": int(msg), "index": idx - 1, "begin": begin, "count": COMMENTS_PER_PAGE, "type": 0}
            try:
                data = self._api("/cgi-bin/comment/list", body, idempotent=True)
            except InvalidRequest as exc:
                if exc.code == 88001:
                    return CommentBatch(found, cursor, gone=True)
                raise
            rows = [r for r in data.get("comment") or [] if isinstance(r, Mapping)]
            for row in rows:
                begin += 1
                comment_id = int(row.get("user_comment_id") or 0)
                if comment_id <= max_id:
                    continue
                max_id = comment_id
                found.append(self._comment(row, f"{msg}_{idx}", ctx))
                if len(found) >= limit:
                    break
            if len(rows) < COMMENTS_PER_PAGE or begin >= int(data.get("total") or 0):
                break
        return CommentBatch(found, {"begin": begin, "max_id": max_id})

    def _comment(self, row: Mapping[str, Any], msgid: str, ctx: DeliveryContext) -> Comment:
        comment_id = str(row.get("user_comment_id"))
        openid = str(row.get("openid") or "")
        created = row.get("create_time")
        return Comment(
            id=comment_id,
            # user_comment_id counts within one article
            guid=f"wechat:comment:{msgid}:{comment_id}",
            text=str(row.get("content") or ""),
            # the openid is a reader's stable identifier on this account: the monitor needs to tell readers
            # apart, not to know who they are, so only a digest of it is kept
            author=f"读者{hashlib.sha256(openid.encode()).hexdigest()[:8]}" if openid else "",
            created_at=datetime.fromtimestamp(int(created), SHANGHAI).astimezone(UTC) if created else None,
            link=str(ctx.progress.get("article_url") or ctx.remote_url or ""),
        )

    def lookup_published(self, ctx: DeliveryContext) -> PublishResult | None:
        """Only the published-articles scan of :meth:`lookup` (no draft adoption)."""
        return self._find_published(ctx)

    def close(self) -> None:
        super().close()
        if self._fetcher is not None:
            self._fetcher.close()


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()
