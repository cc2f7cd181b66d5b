"""Website adapter: a WordPress site through its REST API (``/wp-json/wp/v2``).

Protocol (developer.wordpress.org/rest-api/reference/):

- Basic auth with an *application password* (credentials ``{"username", "app_password"}``); the site
  root is ``config["base_url"]``. ``GET /users/me`` checks the credential.
- ``POST /media`` uploads the cover (raw body + ``Content-Disposition``) → ``{id, source_url}``.
- ``POST /posts {title, content, excerpt, status: "publish", slug, featured_media, meta}`` → 201
  ``{id, link, status, slug}``.
- ``GET /posts?slug=…&status=any`` finds a post by slug (non-public statuses need an editing user);
  ``DELETE /posts/<id>`` moves it to the trash (410 ``rest_already_trashed`` the second time);
  ``GET /comments?post=<id>&per_page=1`` gives the comment count in ``X-WP-Total``;
  ``GET /comments?post=<id>&per_page=100&page=N&order=asc&orderby=date&after=<date>`` reads the comments
  themselves (``X-WP-TotalPages`` says when to stop). ``after`` is compared with the comment's ``date`` (site
  time: ``date_query``'s default column is ``comment_date``) and is exclusive, at one-second resolution, so
  :meth:`WebsiteChannel.comments` asks from one second before the newest comment it saw and drops the ids it
  saw in that second.
- Errors: ``{"code": "rest_…", "message": …, "data": {"status": N}}``; proxies, WAFs and rate-limit
  plugins in front of WordPress answer with HTML instead, so the status code is the fallback.

Idempotency: WordPress has none, so our key goes into the slug (and ``meta.mm_delivery`` where the site
registers that key). A retry after a lost answer must look the slug up first: posting again would give
a *second* post with slug ``<key>-2``, because WordPress de-duplicates slugs instead of refusing them.
If that happens anyway (a caller skipped the look-up), ``publish`` notices the changed slug, deletes
its duplicate and returns the original.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

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
    register,
)
from channels.errors import (
    ChannelError,
    InvalidRequest,
    NeedsReauth,
    OutcomeUnknown,
    RateLimited,
    Unavailable,
)
from channels.render import html_to_text, image_urls, markdown_to_html, summarize, truncate

log = logging.getLogger(__name__)

API = "/wp-json/wp/v2"
COVER_TYPES = frozenset({"jpeg", "png", "gif", "webp"})  # what a WordPress site takes as an image upload
COVER_MAX_BYTES = 20 * 2**20  # above what most sites allow (upload_max_filesize); WordPress says if it is too big
PUBLISHING_ROLES = {"administrator", "editor", "author"}
# Statuses a post can be in before it is public: publish() reports them as awaiting confirmation.
PENDING_STATUSES = {"pending", "draft", "future"}
COMMENTS_PER_PAGE = 100  # the REST API's largest per_page


@register
class WebsiteChannel(Channel):
    """A WordPress site (self-hosted or WordPress.com Business) reached with an application password."""

    kind = "website"
    display_name = "网站 (WordPress)"
    credential_fields = ("username", "app_password")
    title_maxlen = 200  # WordPress stores any length; themes and feeds do not cope with more
    summary_maxlen = 300
    body_maxlen = 1_000_000  # well inside MySQL's default max_allowed_packet
    rate_per_second = 5.0
    supports_comments = True

    # WordPress answers errors with an HTTP error status and {"code": "rest_…", "message": …}.
    ERROR_BODY_ON = "error"
    ERROR_CODE_KEYS = ("code",)
    ERROR_MESSAGE_KEYS = ("message",)
    ERROR_MAP: ClassVar[Mapping[ErrorCode, type[ChannelError]]] = {
        # The credential or the user's role does not allow it: a person must fix the account.
        "rest_not_logged_in": NeedsReauth,
        "incorrect_password": NeedsReauth,
        "invalid_username": NeedsReauth,
        "rest_forbidden": NeedsReauth,
        "rest_forbidden_status": NeedsReauth,
        "rest_cannot_create": NeedsReauth,
        "rest_cannot_publish": NeedsReauth,
        "rest_cannot_delete": NeedsReauth,
        # Our request is wrong, or points at something that is not there.
        "rest_invalid_param": InvalidRequest,
        "rest_invalid_json": InvalidRequest,
        "empty_content": InvalidRequest,
        "rest_invalid_featured_media": InvalidRequest,
        "rest_upload_no_data": InvalidRequest,
        "rest_upload_no_content_disposition": InvalidRequest,
        "rest_upload_sideload_error": InvalidRequest,  # sent with HTTP 500, but no retry can fix it
        "rest_post_invalid_id": InvalidRequest,
        "rest_already_trashed": InvalidRequest,
        "rest_no_route": InvalidRequest,  # REST API disabled, or base_url is not the site root
        # A PHP fatal error on the site: plugins get fixed, so retry later.
        "internal_server_error": Unavailable,
    }
    # By HTTP status, when the body carries no WordPress code we know (a proxy's page, a plugin's code).
    STATUS_MAP: ClassVar[Mapping[int, type[ChannelError]]] = {
        400: InvalidRequest,
        401: NeedsReauth,
        403: NeedsReauth,
        404: InvalidRequest,
        413: InvalidRequest,  # the web server's upload limit (client_max_body_size …)
        429: RateLimited,
        500: Unavailable,
        502: Unavailable,
        503: Unavailable,
        504: Unavailable,
    }

    def __init__(self, account: AccountInfo, client: httpx.Client | None = None, **kwargs: Any) -> None:
        super().__init__(account, client, **kwargs)
        creds = account.credentials
        username, password = str(creds.get("username") or ""), str(creds.get("app_password") or "")
        # Auth goes on each WordPress request, never on the client: the same client fetches covers
        # from other hosts, which must not see the site's password.
        self._auth = httpx.BasicAuth(username, password) if username and password else None

    # -- plumbing ----------------------------------------------------------------------------------

    def _wp(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._auth is None:
            raise NeedsReauth("website account has no username / application password", code="no_credentials")
        return self.request(method, API + path, auth=self._auth, **kwargs)

    def _error_fields(self, response: httpx.Response, body: Any) -> tuple[ErrorCode | None, str]:
        """WordPress's own codes only: a plugin's code (kept in the message) says less than the status."""
        if not isinstance(body, Mapping):
            # A web server's, proxy's or WAF's page, or JSON that is not WordPress's: say what it was, not
            # what it said (the address is the user's; its words could be anything the server holds).
            kind = response.headers.get("content-type", "").split(";", 1)[0].strip() or "no content type"
            return None, f"not WordPress's JSON but {kind if body is None else 'other JSON'}"
        code, message = super()._error_fields(response, body)
        message = html_to_text(message)[:500]
        if code is None:
            return None, message or str(body)[:200]
        if code not in self.ERROR_MAP:
            return None, f"{code}: {message}".rstrip(": ")
        return code, message

    def _error_text(self, message: str, *, code: ErrorCode | None, status: int) -> str:
        text = super()._error_text(message, code=code, status=status)
        if status == 401 and code not in ("incorrect_password", "invalid_username"):
            # WordPress saw no credential at all: commonly the web server drops the Authorization header
            text += " (the web server may be stripping the Authorization header)"
        return text

    @staticmethod
    def _json(response: httpx.Response, *, committed: bool = False) -> Any:
        """The reply's JSON. ``committed``: the call changed state, so an unreadable reply is lost."""
        try:
            return response.json()
        except ValueError:
            if committed:
                raise OutcomeUnknown("WordPress accepted the request but its reply is not JSON") from None
            raise InvalidRequest(
                f"{response.request.url} did not answer with JSON: is this the WordPress site root?"
            ) from None

    # -- operations --------------------------------------------------------------------------------

    def check_credentials(self) -> None:
        """``GET /users/me``: the password must work and the user must be allowed to publish."""
        if not self.base_url(self.account):
            raise InvalidRequest("no config.base_url: the site's address is needed", code="no_base_url")
        me = self._json(self._wp("GET", "/users/me", params={"context": "edit"}))
        if not isinstance(me, dict) or "id" not in me:
            raise InvalidRequest("unexpected /users/me reply: is this a WordPress site?")
        roles = set(me.get("roles") or ())
        if roles and not roles & PUBLISHING_ROLES:
            raise NeedsReauth(
                f"WordPress user {me.get('slug')!r} ({', '.join(sorted(roles))}) may not publish posts",
                code="rest_cannot_publish",
            )

    def render(self, content: PostContent, *, link: str | None = None) -> Rendered:
        """Markdown to sanitised HTML; title and excerpt cut to the limits. Raises if the body is too big."""
        body_html = markdown_to_html(content.body)
        if len(body_html) > self.body_maxlen:
            raise InvalidRequest(f"post body is {len(body_html)} characters, the website takes {self.body_maxlen}")
        text = html_to_text(body_html)
        return Rendered(
            title=truncate(content.title.strip(), self.title_maxlen),
            html=body_html,
            text=text,
            summary=summarize(content.summary, text, self.summary_maxlen),
            cover_url=content.cover_url,
            images=tuple(image_urls(body_html)),
        )

    def publish(self, ctx: DeliveryContext) -> PublishResult:
        """Upload the cover (once), create the post with our key as slug, save each id as it arrives."""
        if ctx.progress.get("post_id"):
            # an earlier attempt got as far as creating the post: never create a second one
            found = self.lookup(ctx)
            if found is not None:
                return found
        rendered = self.render(ctx.content)
        payload: dict[str, Any] = {
            "title": rendered.title,
            "content": rendered.html,
            "excerpt": rendered.summary,
            "status": "publish",
            "slug": ctx.idempotency_key,
            "meta": {"mm_delivery": ctx.idempotency_key},
        }
        if rendered.cover_url:
            payload["featured_media"] = self._cover_media_id(ctx, rendered.cover_url)
        post = self._json(self._wp("POST", "/posts", json=payload), committed=True)
        if not isinstance(post, dict) or "id" not in post:
            raise OutcomeUnknown("WordPress created something but its reply has no post id")
        ctx.save(post_id=int(post["id"]))
        if post.get("slug") not in (None, ctx.idempotency_key):
            # WordPress renamed our slug: a post with our key already exists (an earlier attempt whose
            # answer was lost). Keep that one, remove the duplicate we just made.
            original = self._find(ctx.idempotency_key)
            if original is not None and int(original["id"]) != int(post["id"]):
                log.warning(
                    "website %s: duplicate post %s removed, keeping %s",
                    self.account.id,
                    post["id"],
                    original["id"],
                )
                self._wp("DELETE", f"/posts/{int(post['id'])}", params={"force": "true"})
                ctx.save(post_id=int(original["id"]))
                return _result(original)
        return _result(post)

    def _cover_media_id(self, ctx: DeliveryContext, cover_url: str) -> int:
        if ctx.progress.get("media_id"):
            return int(ctx.progress["media_id"])
        data, mime, ext = self._fetch_cover(cover_url)
        reply = self._wp(
            "POST",
            "/media",
            content=data,
            headers={
                "Content-Type": mime,
                "Content-Disposition": f'attachment; filename="{ctx.idempotency_key}-cover.{ext}"',
            },
        )
        media = self._json(reply, committed=True)
        if not isinstance(media, dict) or "id" not in media:
            raise OutcomeUnknown("WordPress stored the cover but its reply has no media id")
        ctx.save(media_id=int(media["id"]), media_url=media.get("source_url"))
        return int(media["id"])

    def _fetch_cover(self, url: str) -> tuple[bytes, str, str]:
        """Download the cover image: (bytes, mime type, file extension)."""
        # absolute URL: httpx ignores the client's base_url; no auth is attached to this request
        data, kind = self.download_image(url, what="cover", max_bytes=COVER_MAX_BYTES, types=COVER_TYPES)
        return data, kind.mime, kind.extension

    def _find(self, key: str) -> dict[str, Any] | None:
        """Our post by slug (any status but trash), oldest first; needs an editing user, as WP requires."""
        reply = self._wp("GET", "/posts", params={"slug": key, "status": "any", "context": "edit", "per_page": 10})
        posts = self._json(reply)
        mine = [
            p
            for p in posts
            if isinstance(p, dict)
            and p.get("slug") == key
            # meta is only returned where the site registers our key; where it does, it must agree
            and ((p.get("meta") or {}).get("mm_delivery") in (None, "", key))
        ]
        return min(mine, key=lambda p: int(p["id"])) if mine else None

    def lookup(self, ctx: DeliveryContext) -> PublishResult | None:
        """Find the post by its slug (our idempotency key); saves its id when found."""
        post = self._find(ctx.idempotency_key)
        if post is None:
            return None
        ctx.save(post_id=int(post["id"]))
        return _result(post)

    def status(self, ctx: DeliveryContext) -> StatusResult:
        """The post's state: published, pending (awaiting moderation on the site), retracted or failed."""
        post_id = ctx.remote_id or ctx.progress.get("post_id")
        if not post_id:
            found = self.lookup(ctx)
            if found is None:
                return StatusResult("failed", reason="no post with our slug on the site")
            post_id = found.remote_id
        try:
            post = self._json(self._wp("GET", f"/posts/{int(post_id)}", params={"context": "edit"}))
        except InvalidRequest as exc:
            if exc.code == "rest_post_invalid_id":
                return StatusResult("failed", reason="the post was deleted on the site")
            raise
        state = post.get("status")
        if state == "publish":
            return StatusResult("published", url=post.get("link"))
        if state == "trash":
            return StatusResult("retracted", url=post.get("link"))
        if state in PENDING_STATUSES:
            return StatusResult("pending", url=post.get("link"))
        return StatusResult("failed", url=post.get("link"), reason=f"post status is {state!r}")

    def metrics(self, ctxs: Iterable[DeliveryContext]) -> dict[int, Metrics]:
        """Comment counts (``X-WP-Total``); WordPress core keeps no view counts."""
        out: dict[int, Metrics] = {}
        for ctx in ctxs:
            post_id = ctx.remote_id or ctx.progress.get("post_id")
            if not post_id:
                continue
            reply = self._wp("GET", "/comments", params={"post": int(post_id), "per_page": 1})
            total = reply.headers.get("x-wp-total", "")
            comments = int(total) if total.isdigit() else len(self._json(reply))
            out[ctx.delivery_id] = Metrics(comments=comments)
        return out

    def comments(
        self, ctx: DeliveryContext, cursor: Mapping[str, Any] | None = None, *, limit: int = 500
    ) -> CommentBatch:
        """The post's approved comments after the cursor, oldest first (``after`` + ``order=asc``, paged).

        Cursor: ``{"after": <the newest comment's date, site time>, "ids": [ids with that date]}``.
        """
        cursor = dict(cursor or {})
        post_id = ctx.remote_id or ctx.progress.get("post_id")
        if not post_id:
            return CommentBatch([], cursor)
        last, seen = str(cursor.get("after") or ""), {int(i) for i in cursor.get("ids") or ()}
        params: dict[str, Any] = {
            "post": int(post_id),
            "per_page": COMMENTS_PER_PAGE,
            "order": "asc",
            "orderby": "date",
        }
        if last:
            # exclusive and to the second: ask from a second earlier, drop what was seen in that second
            params["after"] = (datetime.fromisoformat(last) - timedelta(seconds=1)).isoformat()
        found: list[Comment] = []
        page = 1
        while len(found) < limit:
            reply = self._wp("GET", "/comments", params={**params, "page": page})
            rows = self._json(reply)
            if not isinstance(rows, list):
                raise InvalidRequest("WordPress answered /comments with something that is not a list")
            for row in rows:
                if not isinstance(row, dict) or "id" not in row or int(row["id"]) in seen:
                    continue
                comment = self._comment(row, ctx)
                found.append(comment)
                seen.add(int(row["id"]))
                day = str(row.get("date") or "")
                if day and day != last:
                    last, seen = day, {int(row["id"])}
                if len(found) >= limit:
                    break
            pages = reply.headers.get("x-wp-totalpages", "")
            if len(rows) < COMMENTS_PER_PAGE or (pages.isdigit() and page >= int(pages)):
                break
            page += 1
        ids_at_last = sorted(seen) if last else []
        return CommentBatch(found, {"after": last, "ids": ids_at_last} if last else cursor)

    def _comment(self, row: Mapping[str, Any], ctx: DeliveryContext) -> Comment:
        content = row.get("content")
        rendered = content.get("rendered", "") if isinstance(content, Mapping) else str(content or "")
        created = None
        if row.get("date_gmt"):
            try:
                created = datetime.fromisoformat(str(row["date_gmt"])).replace(tzinfo=UTC)
            except ValueError:
                created = None
        link = str(row.get("link") or "") or f"{ctx.remote_url or ''}#comment-{row['id']}"
        return Comment(
            id=str(row["id"]),
            # comment ids are per site: the account's id keeps two sites' comment 5 apart
            guid=f"website:{self.account.id}:comment:{row['id']}",
            text=html_to_text(str(rendered)),
            author=str(row.get("author_name") or ""),
            created_at=created,
            link=link,
        )

    def retract(self, ctx: DeliveryContext) -> None:
        """Move the post to the trash. Already trashed, or gone, counts as done."""
        post_id = ctx.remote_id or ctx.progress.get("post_id")
        if not post_id:
            found = self.lookup(ctx)
            if found is None:
                return
            post_id = found.remote_id
        try:
            self._wp("DELETE", f"/posts/{int(post_id)}")
        except InvalidRequest as exc:
            if exc.code in ("rest_already_trashed", "rest_post_invalid_id"):
                return
            raise


def _result(post: dict[str, Any]) -> PublishResult:
    state = "awaiting_confirmation" if post.get("status") in PENDING_STATUSES else "published"
    return PublishResult(remote_id=str(post["id"]), state=state, url=post.get("link"))
