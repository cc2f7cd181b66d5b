"""Toutiao (头条号) adapter: the creator console with a stored session, or assisted (manual) publishing.

Toutiao has no public article API (its open platform publishes video only). Multi-platform tools post
through the creator console ``mp.toutiao.com`` with an operator's logged-in session, so this adapter does
the same, in two modes chosen by ``config['mode']``:

``session`` (default)
    ``credentials``: ``sessionid`` (the console's session cookie) and ``expires_at`` (ISO 8601 or epoch
    seconds; the cookie's own expiry). The session is treated as an expiring credential: past
    ``expires_at``, or when the console says the user is not logged in, the account needs
    re-authorisation (:class:`NeedsReauth`). Endpoints, all answering HTTP 200 with the error in the body
    (``{"err_no": N}`` on the article endpoints, ``{"code": N}`` on others; both are read):

    - ``POST /mp/agw/article/publish?source=mp&type=article`` (form): the fields the console's editor
      sends, as seen in the public Wechatsync extension's Toutiao adapter (``pgc_id``, ``source``,
      ``title``, ``content``, ``title_id``, ``save``, ``timer_status``, ``pgc_feed_covers``,
      ``article_ad_type``, ``claim_exclusive``, ``extra`` …) → ``data.pgc_id``. The article then goes
      through the platform's review, so the delivery is ``awaiting_confirmation`` until ``status`` sees
      it published (or rejected).
    - ``POST /spice/image`` (multipart ``image``) → ``data.image_uri``/``image_url``: every body image and
      the cover are uploaded first (the console keeps images on its own CDN; the public Wechatsync adapter
      does the same) and the HTML is rewritten to them;
    - ``GET /mp/agw/article/list?size=&page=&status=all`` (the console's article list: lookup, status),
      ``POST /mp/agw/article/delete`` (retract), ``GET /mp/agw/statistic/item_stat?pgc_ids=`` (metrics),
      ``GET /mp/agw/media/get_media_info`` (credential check).

    Limits of this mode against the live console: its web pages sign requests with values computed by
    their own scripts (``_signature``, ``msToken``, ``a_bogus``), which public tools obtain by running the
    request inside a logged-in browser tab; a plain HTTP client cannot compute them, so the live console
    may refuse these calls even with a valid session. The refusal surfaces as an error (never as a
    silent success), and such an account should be switched to ``mode: manual``.

    The publish, image, list and media-info paths are the ones public tools call; the shapes of the
    list, delete and statistics answers, and the console's error numbers, are not publicly documented:
    7050 ("save failed", e.g. a title over 30 characters) comes from a public tool's notes, the other
    numbers in :attr:`Toutiao.ERROR_MAP` are this project's convention, which the sandbox answers with.

``manual``
    Assisted publishing (:mod:`channels.manual`): ``publish`` answers ``awaiting_manual`` and makes no
    call; the operator posts the downloadable package and records the URL. Retraction and metrics are
    not supported for such an account (the instance's ``supports_retract`` and ``supports_metrics`` are
    False): the service must tell the operator to delete the post by hand.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import httpx

from channels.base import (
    AccountInfo,
    Channel,
    DeliveryContext,
    ErrorCode,
    Limiter,
    Metrics,
    PostContent,
    PublishResult,
    Rendered,
    StatusResult,
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
from channels.manual import (
    MANUAL_ONLY,
    manual_lookup,
    manual_publish,
    manual_status,
    manual_unsupported,
    render_article,
)
from channels.render import ALLOWED_TAGS, replace_image_urls

API_ROOT = "https://mp.toutiao.com"
WEB_ROOT = "https://www.toutiao.com"
SHANGHAI = ZoneInfo("Asia/Shanghai")
TITLE_MINLEN = 5  # the console's editor asks for 5–30 characters
PUBLISH_PATH = "/mp/agw/article/publish"
UPLOAD_PATH = "/spice/image"  # the console editor's image upload (multipart field "image")
IMAGE_MAX_BYTES = 20 * 2**20
IMAGE_TYPES = frozenset({"jpeg", "png", "gif", "webp", "bmp"})  # what the console's image store takes
LIST_PAGES = 5  # newest 5 × 20 articles are searched by lookup/status
LIST_PAGE_SIZE = 20
STATS_BATCH = 50
# Clock skew allowed when matching an article to an attempt by title and creation time.
LOOKUP_SKEW_S = 300

# The console's article states in its list (``status``), as this adapter reads them.
STATE_REVIEW, STATE_PUBLISHED, STATE_REJECTED, STATE_DELETED = 0, 1, 2, 3

# The console strips outside links: keep their text only.
TOUTIAO_TAGS = ALLOWED_TAGS - {"a"}


def _parse_expiry(value: Any) -> datetime | None:
    """``expires_at`` as an aware UTC datetime (ISO 8601 or epoch seconds), ``None`` if not given."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
        return datetime.fromtimestamp(float(value), UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@register
class Toutiao(Channel):
    """头条号 through the creator console (session mode) or assisted publishing (``mode: manual``)."""

    kind = "toutiao"
    display_name = "头条号"
    credential_fields = ("sessionid", "expires_at")
    title_maxlen = 30  # the console refuses longer titles ("31 / 30", then 7050)
    summary_maxlen = 120
    body_maxlen = 100_000
    rate_per_second = 0.5  # a person's pace: the console is not an API and watches for bots
    asynchronous = True  # articles go through the platform's review before they are live

    quota_timezone = SHANGHAI  # the daily article quota resets at midnight in China
    # The console answers HTTP 200 with the error in the body: {"err_no": N} on the article endpoints,
    # {"code": N} on others. An HTTP error status comes from its gateway and is mapped by the status.
    ERROR_BODY_ON = "success"
    ERROR_CODE_KEYS = ("err_no", "code")
    ERROR_MESSAGE_KEYS = ("message", "msg", "reason")
    STATUS_MAP: ClassVar[Mapping[int, type[ChannelError]]] = {
        401: NeedsReauth,  # the console refused the session
        403: NeedsReauth,
    }
    ERROR_MAP: ClassVar[Mapping[ErrorCode, type[ChannelError]]] = {
        -1: Unavailable,  # 系统繁忙: the console is busy
        1001: NeedsReauth,  # 请先登录: the session expired or was logged out
        1002: NeedsReauth,  # 账号状态异常: the account is frozen or banned; a person must act
        1003: RateLimited,  # 操作过于频繁
        7004: InvalidRequest,  # 文章不存在 (retract and status treat it as "gone")
        7020: InvalidRequest,  # 图片格式不支持: the image store refused the file
        7050: InvalidRequest,  # 保存失败: e.g. a title outside 5–30 characters, an image not uploaded
        7051: ContentRejected,  # 内容含有违规信息: refused at submission
        7052: QuotaExhausted,  # 今日发文次数已达上限: the daily article quota is spent
        7053: ContentRejected,  # 重复发布: the same article was published already
        MANUAL_ONLY: InvalidRequest,  # ours: retraction of an assisted (manual) account's post
    }

    def __init__(
        self,
        account: AccountInfo,
        client: httpx.Client | None = None,
        *,
        limiter: Limiter | None = None,
        token_cache: Any | None = None,
        timeout: float = 20.0,
    ) -> None:
        super().__init__(account, client, limiter=limiter, token_cache=token_cache, timeout=timeout)
        self.manual = _is_manual(account.config)
        if self.manual:
            # Per account, not per class: the service must read these on the instance.
            self.supports_retract = False
            self.supports_metrics = False
            self.asynchronous = False

    @classmethod
    def can_retract(cls, config: Mapping[str, Any]) -> bool:
        """An assisted (``mode: manual``) account's posts are deleted by hand."""
        return not _is_manual(config)

    # -- plumbing ---------------------------------------------------------------------------------

    @classmethod
    def base_url(cls, account: Any) -> str:
        """``config['base_url']`` (a sandbox) or the real console."""
        return str(account.config.get("base_url") or API_ROOT).rstrip("/")

    @property
    def _web_root(self) -> str:
        # A sandbox serves the console and the article pages at one root; the real platform does not.
        base = self.base_url(self.account)
        return WEB_ROOT if base == API_ROOT else base

    def article_url(self, pgc_id: str) -> str:
        """The public page of an article."""
        return f"{self._web_root}/item/{pgc_id}/"

    def _session_headers(self) -> dict[str, str]:
        sessionid = str(self.account.credentials.get("sessionid") or "")
        if not sessionid:
            raise NeedsReauth("the Toutiao account has no stored console session")
        expires = _parse_expiry(self.account.credentials.get("expires_at"))
        if expires is not None and expires <= datetime.now(UTC):
            raise NeedsReauth(f"the Toutiao console session expired at {expires.isoformat()}")
        return {
            "Cookie": f"sessionid={sessionid}; sessionid_ss={sessionid}",
            "Referer": "https://mp.toutiao.com/profile_v4/graphic/publish",
            "Origin": "https://mp.toutiao.com",
        }

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, headers=self._session_headers(), **kwargs)
        body = _json(response)
        return body if isinstance(body, dict) else {}

    def _redirect_error(self, response: httpx.Response) -> ChannelError:
        location = response.headers.get("location", "")
        if "login" in location or "passport" in location:
            return NeedsReauth("the Toutiao console sent us to its login page: the session is gone")
        return super()._redirect_error(response)

    # -- render -----------------------------------------------------------------------------------

    def render(self, content: PostContent, *, link: str | None = None) -> Rendered:
        """Title within 30 characters, HTML without outside links (the console strips them), text."""
        return render_article(
            content, title_maxlen=self.title_maxlen, summary_maxlen=self.summary_maxlen, tags=TOUTIAO_TAGS
        )

    # -- operations -------------------------------------------------------------------------------

    def check_credentials(self) -> None:
        """Ask the console who is logged in; an expired session raises :class:`NeedsReauth`."""
        if self.manual:
            return
        body = self._call("GET", "/mp/agw/media/get_media_info")
        if not ((body.get("data") or {}).get("user") or {}).get("id"):
            raise NeedsReauth("the Toutiao console does not recognise the stored session")

    def publish(self, ctx: DeliveryContext) -> PublishResult:
        """Submit the article (``awaiting_confirmation`` until review ends); manual mode: ``awaiting_manual``."""
        if self.manual:
            return manual_publish(ctx)
        pgc_id = ctx.progress.get("pgc_id")
        if pgc_id:  # an earlier attempt was accepted: never submit twice
            url = ctx.progress.get("url")
            state = "published" if url else "awaiting_confirmation"
            return PublishResult(remote_id=str(pgc_id), state=state, url=url)
        rendered = self.render(ctx.content)
        if len(rendered.title) < TITLE_MINLEN:
            raise InvalidRequest(f"a Toutiao title needs {TITLE_MINLEN}–{self.title_maxlen} characters", code=7050)
        headers = self._session_headers()  # fail on an expired session before recording an attempt
        html, covers = self._upload_images(ctx, rendered, headers)
        title_id = ctx.progress.get("title_id") or f"{int(time.time() * 1000)}_{secrets.randbelow(10**16):016d}"
        # Recorded before the call: lookup recognises the article by it (or by title and time).
        ctx.save(title_id=title_id, attempted_at=time.time(), title=rendered.title)
        form = {
            "pgc_id": "0",
            "source": "29",
            "title": rendered.title,
            "content": html,
            "title_id": title_id,
            "save": "1",  # 1 publishes, 0 saves a draft
            "timer_status": "0",
            "timer_time": "",
            "pgc_feed_covers": _dumps(covers),
            "draft_form_data": _dumps({"coverType": 1 if covers else 3}),
            "article_ad_type": "3",
            "is_fans_article": "0",
            "claim_exclusive": "0",
            "extra": _dumps({"content_word_cnt": len(rendered.text), "is_multi_title": 0, "sub_titles": []}),
        }
        try:
            response = self.request(
                "POST", PUBLISH_PATH, params={"source": "mp", "type": "article"}, data=form, headers=headers
            )
        except ContentRejected as exc:
            # "Already published" for the title and body we are sending: an earlier attempt of this
            # delivery may have landed with its answer lost. If so, that article is ours.
            if exc.code == 7053:
                found = self.lookup(ctx)
                if found is not None:
                    return found
            raise
        data = (_json(response) or {}).get("data") or {}
        new_id = _item_id(data)
        if not new_id:
            raise OutcomeUnknown("the Toutiao console accepted the article but its answer carries no id")
        ctx.save(pgc_id=str(new_id))
        return PublishResult(remote_id=str(new_id), state="awaiting_confirmation")

    def _fetch_image(self, url: str) -> tuple[bytes, str]:
        """Download one of the post's images (a GET: retrying it is always safe): (bytes, MIME type)."""
        # The bytes decide: the console's image store judges the file, not the host's Content-Type.
        data, kind = self.download_image(url, what="image", max_bytes=IMAGE_MAX_BYTES, types=IMAGE_TYPES)
        return data, kind.mime

    def _upload_images(
        self, ctx: DeliveryContext, rendered: Rendered, headers: dict[str, str]
    ) -> tuple[str, list[dict[str, Any]]]:
        """Upload the body images and the cover to the console's image store; rewrite the HTML to them.

        The console only keeps images on its own CDN (public tools upload each one, as its editor does).
        Each upload is saved in ``progress['images']`` at once, so a retry never uploads an image twice.
        """
        uploaded: dict[str, dict[str, Any]] = dict(ctx.progress.get("images") or {})
        sources = list(rendered.images)
        if rendered.cover_url and rendered.cover_url not in sources:
            sources.append(rendered.cover_url)
        for url in sources:
            if url in uploaded:
                continue
            data, mime = self._fetch_image(url)
            name = url.rsplit("/", 1)[-1].split("?")[0] or "image"
            response = self.request(
                "POST",
                UPLOAD_PATH,
                params={"upload_source": "20020002", "aid": "1231", "device_platform": "web"},
                files={"image": (name, data, mime)},
                headers=headers,
            )
            info = (_json(response) or {}).get("data") or {}
            if not info.get("image_uri") or not info.get("image_url"):
                raise Unavailable("the console's image upload answered without an image address")
            uploaded[url] = {
                "uri": str(info["image_uri"]),
                "url": str(info["image_url"]),
                "width": _int(info.get("image_width")) or 0,
                "height": _int(info.get("image_height")) or 0,
            }
            ctx.save(images=dict(uploaded))
        html = replace_image_urls(rendered.html, {src: image["url"] for src, image in uploaded.items()})
        covers = []
        if rendered.cover_url:
            cover = uploaded[rendered.cover_url]
            covers.append(
                {
                    "id": 0,
                    "url": cover["url"],
                    "uri": cover["uri"],
                    "origin_uri": cover["uri"],
                    "thumb_width": cover["width"],
                    "thumb_height": cover["height"],
                }
            )
        return html, covers

    def _articles(self) -> Iterable[dict[str, Any]]:
        """The account's newest articles, page by page (the console's own list)."""
        for page in range(1, LIST_PAGES + 1):
            body = self._call(
                "GET",
                "/mp/agw/article/list",
                params={"size": LIST_PAGE_SIZE, "page": page, "status": "all", "source": "all"},
            )
            data = body.get("data") or {}
            items = data.get("list") or data.get("content") or []
            yield from items
            if not data.get("has_more") or len(items) < LIST_PAGE_SIZE:
                return

    def _find(self, pgc_id: str) -> dict[str, Any] | None:
        return next((a for a in self._articles() if _item_id(a) == pgc_id), None)

    def _status_of(self, item: dict[str, Any] | None, pgc_id: str) -> StatusResult:
        if item is None:
            return StatusResult(state="retracted", reason="the article is not in the account's article list")
        state = _state_number(item.get("status"))
        url = str(item.get("article_url") or self.article_url(pgc_id))
        if state == STATE_PUBLISHED:
            return StatusResult(state="published", url=url)
        if state == STATE_REJECTED:
            return StatusResult(state="failed", reason=str(item.get("reason") or "rejected by Toutiao's review"))
        if state == STATE_DELETED:
            return StatusResult(state="retracted", reason=str(item.get("reason") or "deleted on Toutiao"))
        return StatusResult(state="pending")

    def status(self, ctx: DeliveryContext) -> StatusResult:
        """Review state: pending → published (URL) or failed (the review's reason); retracted when gone."""
        if self.manual:
            return manual_status(ctx)
        pgc_id = str(ctx.remote_id or ctx.progress.get("pgc_id") or "")
        if not pgc_id:
            return StatusResult(state="pending")
        result = self._status_of(self._find(pgc_id), pgc_id)
        if result.state == "published" and result.url:
            ctx.save(url=result.url)
        return result

    def lookup(self, ctx: DeliveryContext) -> PublishResult | None:
        """Find an article an earlier attempt submitted: by saved id, by ``title_id``, or title and time.

        Whatever became of it counts as found (in review, published, rejected, deleted): only an article that
        is not in the list at all lets publish post one.
        """
        if self.manual:
            return manual_lookup(ctx)
        pgc_id = ctx.progress.get("pgc_id")
        title_id = ctx.progress.get("title_id")
        title = ctx.progress.get("title") or self.render(ctx.content).title
        since = float(ctx.progress.get("attempted_at") or 0) - LOOKUP_SKEW_S
        for item in self._articles():
            item_id = _item_id(item)
            if pgc_id:
                hit = item_id == str(pgc_id)
            elif item.get("title_id"):
                # Where the list carries the editor's title_id, it identifies the attempt exactly.
                hit = item.get("title_id") == title_id
            else:
                hit = item.get("title") == title and _number(item.get("create_time")) >= since
            if not hit:
                continue
            status = self._status_of(item, item_id)
            ctx.save(pgc_id=item_id)
            if status.state == "published":
                return PublishResult(remote_id=item_id, state="published", url=status.url)
            # In review, and also rejected or deleted: it is ours and it was posted. Posting again would put a
            # second copy up (the console's 7053 ignores deleted articles) or defy a removal; status() settles
            # it as failed (with the review's reason) or retracted, as for a delivery whose answer arrived.
            return PublishResult(remote_id=item_id, state="awaiting_confirmation")
        return None

    def metrics(self, ctxs: Iterable[DeliveryContext]) -> dict[int, Metrics]:
        """Reads, likes (digg), shares and comments from the console's statistics; manual mode: none."""
        if self.manual:
            return {}
        by_id: dict[str, list[int]] = {}
        for ctx in ctxs:
            pgc_id = ctx.remote_id or ctx.progress.get("pgc_id")
            if pgc_id:
                by_id.setdefault(str(pgc_id), []).append(ctx.delivery_id)
        ids = list(by_id)
        result: dict[int, Metrics] = {}
        for start in range(0, len(ids), STATS_BATCH):
            body = self._call(
                "GET", "/mp/agw/statistic/item_stat", params={"pgc_ids": ",".join(ids[start : start + STATS_BATCH])}
            )
            for row in (body.get("data") or {}).get("stats") or []:
                for delivery_id in by_id.get(_item_id(row), []):
                    result[delivery_id] = Metrics(
                        reads=_int(row.get("read_count")),
                        likes=_int(row.get("digg_count")),
                        shares=_int(row.get("share_count")),
                        comments=_int(row.get("comment_count")),
                    )
        return result

    def retract(self, ctx: DeliveryContext) -> None:
        """Delete the article; one already gone (7004) counts as retracted. Manual mode: not supported."""
        if self.manual:
            raise manual_unsupported("retraction")
        pgc_id = ctx.remote_id or ctx.progress.get("pgc_id")
        if not pgc_id:
            return
        try:
            self._call("POST", "/mp/agw/article/delete", data={"pgc_id": str(pgc_id)})
        except InvalidRequest as exc:
            if exc.code != 7004:
                raise


def _is_manual(config: Mapping[str, Any]) -> bool:
    return str(config.get("mode", "session")).lower() == "manual"


# How the console's list may word a state, besides the numbers above.
_STATE_WORDS = {
    "审核中": STATE_REVIEW, "reviewing": STATE_REVIEW, "已发布": STATE_PUBLISHED, "published": STATE_PUBLISHED,
    "未通过": STATE_REJECTED, "未通过审核": STATE_REJECTED, "rejected": STATE_REJECTED,
    "已删除": STATE_DELETED, "deleted": STATE_DELETED,
}  # fmt: skip


def _item_id(item: dict[str, Any]) -> str:
    """An article's id, whichever name the console's answer gives it."""
    for key in ("pgc_id", "article_id", "item_id", "group_id", "id"):
        if item.get(key):
            return str(item[key])
    return ""


def _state_number(value: Any) -> int:
    """The article state as a number; anything unrecognised counts as still in review (polled again)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return _STATE_WORDS.get(str(value).strip().lower(), STATE_REVIEW)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
