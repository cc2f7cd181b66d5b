"""Assisted (manual) publishing: for a channel without API access, a person posts a ready-made package.

The flow, end to end:

1. ``publish`` does no network call. It answers ``PublishResult(state="awaiting_manual",
   remote_id=<idempotency key>)``; the delivery waits for an operator.
2. The publisher's API/CLI serves :func:`build_package` for download: a ZIP with the title, the article as HTML
   and as plain text, its images, the cover and a README with the steps.
3. The operator posts it by hand on the platform and records the address
   (``matrix delivery confirm ID --url …``); the delivery then counts as published.

Retraction and metrics are not supported in this mode (``supports_retract`` and ``supports_metrics`` are
False): nothing here can reach the platform, so the service tells the operator to delete the post by hand.

:func:`render_article` (the article rendering built on :mod:`channels.render`) and the ``manual_*``
functions are shared with :mod:`channels.toutiao` (whose accounts may use this mode) and
:mod:`channels.weibo`.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import httpx
from markdown_it import MarkdownIt

from channels.base import (
    Channel,
    DeliveryContext,
    ErrorCode,
    Metrics,
    PostContent,
    PublishResult,
    Rendered,
    StatusResult,
    image_bytes,
    make_client,
    register,
)
from channels.errors import ChannelError, InvalidRequest
from channels.media import decode_data_uri, sniff_image
from channels.render import (
    html_to_text,
    image_urls,
    markdown_to_html,
    replace_image_urls,
    sanitize_html,
    summarize,
    truncate,
)
from core.http import safe_url

# ------------------------------------------------------------------------------------ rendering

# Token-level parsing only (no rendering): finds the first real paragraph for summaries.
_parser = MarkdownIt("commonmark", {"html": True})


def first_paragraph(markdown: str) -> str:
    """Plain text of the first Markdown paragraph that has words (headings and lone images skipped)."""
    tokens = _parser.parse(markdown or "")
    for index, token in enumerate(tokens[:-1]):
        if token.type != "paragraph_open":
            continue
        words = "".join(
            child.content if child.type in {"text", "code_inline"} else " "
            for child in tokens[index + 1].children or []
            if child.type in {"text", "code_inline", "softbreak", "hardbreak"}
        )
        if words.strip():
            return " ".join(words.split())
    return ""


def render_article(
    content: PostContent,
    *,
    title_maxlen: int,
    summary_maxlen: int,
    tags: Iterable[str] | None = None,
) -> Rendered:
    """The generic article rendering: title and summary cut to fit, body as safe HTML and plain text.

    ``tags`` narrows the HTML allow-list of :mod:`channels.render` for stricter platforms.
    """
    html = markdown_to_html(content.body)
    if tags is not None:
        html = sanitize_html(html, tags=tags).strip()
    text = html_to_text(html)
    images = tuple(image_urls(html))
    return Rendered(
        title=truncate(" ".join(content.title.split()), title_maxlen),
        html=html,
        text=text,
        summary=summarize(content.summary or first_paragraph(content.body), text, summary_maxlen),
        cover_url=content.cover_url or (images[0] if images else None),
        images=images,
    )


# -------------------------------------------------------------------------------------- package

Fetch = Callable[[str], bytes]

_README = """\
{title}
{rule}

This package holds one article, ready to be posted by hand{platform_line}.
{delivery_line}{author_line}
Files
  title.txt      the title, as it must appear
  article.html   the article, formatted (open it in a browser, select all, copy, paste into the editor)
  article.txt    the same article as plain text, for editors that reject formatting
  images/        the article's images, numbered in the order they appear
{cover_line}  manifest.json  which image file came from which address

Steps
  1. Sign in to the platform's editor with the account this delivery is for.
  2. Paste the title from title.txt.
  3. Paste the body from article.html (or article.txt). Re-insert the images from images/ where the
     editor did not keep them, in their numbered order.
  4. Set the cover{cover_hint}.
  5. Publish, then open the published post and copy its address.
  6. Record it: {confirm}
     The delivery counts as published only after this step.
{missing}"""


PACKAGE_IMAGE_MAX_BYTES = 20 * 2**20


def _fetch_guarded(url: str) -> bytes:
    """An image's bytes by the guarded client (:func:`channels.base.image_bytes`, at most
    :data:`PACKAGE_IMAGE_MAX_BYTES`); its errors say why not, never what was answered."""
    with make_client(timeout=15.0) as client:
        return image_bytes(client, url, what="image", max_bytes=PACKAGE_IMAGE_MAX_BYTES)


def _load_image(url: str, fetch: Fetch) -> tuple[bytes, str]:
    """The image's bytes and a file extension; raises on any failure (the caller reports it)."""
    if url.startswith("data:"):
        data, _ = decode_data_uri(url)
    else:
        data = fetch(url)
    # The bytes say what the file is (hosts mislabel images), and only images go in the package: an address
    # that answers with anything else (a page, an internal service's JSON) is not one of the post's images.
    kind = sniff_image(data)
    if kind is None:
        raise InvalidRequest("not a JPEG, PNG, GIF, WebP or BMP image")
    return data, f".{kind.extension}"


def _reason(exc: Exception) -> str:
    # Our own errors say what was refused; a transport error's text may quote the server, so only its kind.
    return str(exc) if isinstance(exc, ChannelError) else exc.__class__.__name__


def _zip_write(archive: zipfile.ZipFile, name: str, data: bytes | str) -> None:
    # A fixed timestamp keeps the package byte-identical for the same content (cacheable, testable).
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data.encode("utf-8") if isinstance(data, str) else data)


def build_package(
    content: PostContent,
    rendered: Rendered,
    *,
    delivery_id: int | None = None,
    platform: str = "",
    fetch: Fetch | None = None,
) -> bytes:
    """A ZIP with everything an operator needs to post ``rendered`` by hand.

    Contents: ``title.txt``, ``article.html`` (a full UTF-8 page whose images point at ``images/``),
    ``article.txt``, ``images/01.<ext>`` …, ``cover.<ext>`` (when the post has a cover),
    ``manifest.json`` and ``README.txt`` with the steps, ending with the ``matrix delivery confirm``
    command. Images are downloaded with ``fetch`` (default: an HTTP GET); one that cannot be fetched is
    listed in the README with its address instead of failing the whole package.
    """
    fetch = fetch or _fetch_guarded
    missing: list[str] = []
    manifest: dict[str, Any] = {
        "title": rendered.title,
        "title_as_written": content.title,  # before the platform's length limit
        "author": content.author,
        "delivery_id": delivery_id,
        "platform": platform,
        "images": [],
        "cover": None,
    }
    buffer = io.BytesIO()
    packaged: dict[str, str] = {}
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, url in enumerate(rendered.images, start=1):
            try:
                data, ext = _load_image(url, fetch)
            except (httpx.HTTPError, OSError, ValueError, ChannelError) as exc:  # ValueError: a bad data: URI
                missing.append(f"  image {index}: {safe_url(url)} ({_reason(exc)})")
                manifest["images"].append({"index": index, "source": url, "file": None})
                continue
            name = f"images/{index:02d}{ext}"
            _zip_write(archive, name, data)
            manifest["images"].append({"index": index, "source": url, "file": name})
            packaged[url] = name
        cover_name = None
        if rendered.cover_url:
            try:
                data, ext = _load_image(rendered.cover_url, fetch)
                cover_name = f"cover{ext}"
                _zip_write(archive, cover_name, data)
            except (httpx.HTTPError, OSError, ValueError, ChannelError) as exc:
                missing.append(f"  cover: {safe_url(rendered.cover_url)} ({_reason(exc)})")
            manifest["cover"] = {"source": rendered.cover_url, "file": cover_name}
        # The packaged page shows the packaged copies, so it works offline and matches images/.
        body_html = replace_image_urls(rendered.html, packaged)
        page = (
            '<!doctype html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
            f"<title>{_escape(rendered.title)}</title></head>\n<body>\n<h1>{_escape(rendered.title)}</h1>\n"
            f"{body_html}\n</body></html>\n"
        )
        _zip_write(archive, "title.txt", rendered.title + "\n")
        _zip_write(archive, "article.html", page)
        _zip_write(archive, "article.txt", f"{rendered.title}\n\n{rendered.text}\n")
        _zip_write(archive, "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
        confirm = f"matrix delivery confirm {delivery_id if delivery_id is not None else 'ID'} --url <URL>"
        readme = _README.format(
            title=rendered.title,
            rule="=" * max(8, len(rendered.title) * 2),
            platform_line=f" on {platform}" if platform else "",
            delivery_line=f"Delivery: {delivery_id}\n" if delivery_id is not None else "",
            author_line=f"Author: {content.author}\n" if content.author else "",
            cover_line=f"  {cover_name:<14} the cover image\n" if cover_name else "",
            cover_hint=f" from {cover_name}" if cover_name else " (the post has none: pick one)",
            confirm=confirm,
            missing=("\nNot included (fetch these by hand):\n" + "\n".join(missing) + "\n" if missing else ""),
        )
        _zip_write(archive, "README.txt", readme)
    return buffer.getvalue()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -------------------------------------------------------------------------------------- adapter


def _confirmed(ctx: DeliveryContext) -> PublishResult:
    remote_id = ctx.remote_id or ctx.idempotency_key
    return PublishResult(remote_id=remote_id, state="published", url=ctx.remote_url)


def manual_publish(ctx: DeliveryContext) -> PublishResult:
    """The assisted flow's publish: record that a package is due and wait for an operator.

    Idempotent: calling it again for the same delivery answers the same. Once an operator has recorded
    the URL (``ctx.remote_url``), the delivery is published.
    """
    if ctx.remote_url:
        return _confirmed(ctx)
    if ctx.progress.get("manual") != ctx.idempotency_key:
        ctx.save(manual=ctx.idempotency_key)
    return PublishResult(remote_id=ctx.idempotency_key, state="awaiting_manual")


def manual_status(ctx: DeliveryContext) -> StatusResult:
    """``published`` once an operator recorded the URL, else ``pending``."""
    if ctx.remote_url:
        return StatusResult(state="published", url=ctx.remote_url)
    return StatusResult(state="pending")


def manual_lookup(ctx: DeliveryContext) -> PublishResult | None:
    """Only an operator knows whether the post exists: found when the URL was recorded, else ``None``."""
    if ctx.remote_url:
        return _confirmed(ctx)
    return None


MANUAL_ONLY = "manual_only"  # the code of errors for operations only a person can do


def manual_unsupported(operation: str) -> InvalidRequest:
    """The error for an operation no program can do in assisted mode."""
    return InvalidRequest(
        f"{operation} is not possible for an assisted (manual) channel: do it by hand on the platform",
        code=MANUAL_ONLY,
    )


@register
class Manual(Channel):
    """Assisted publishing for any channel without API access (kind ``manual``).

    ``publish`` answers ``awaiting_manual`` and makes no call; :func:`build_package` gives the operator a
    ready-to-paste ZIP; the operator records the URL. ``retract`` and ``metrics`` are not supported: the
    service must tell the operator to delete the post by hand, and there are no numbers to collect.
    ``config`` may name the target ``platform`` (shown in the package's README).
    """

    kind = "manual"
    display_name = "Assisted (manual) publishing"
    title_maxlen = 100
    summary_maxlen = 200
    rate_per_second = 0.0  # no remote calls at all
    supports_retract = False
    supports_metrics = False
    # No platform, hence no platform errors: the only code is our own, for what only a person can do.
    ERROR_MAP: ClassVar[Mapping[ErrorCode, type[ChannelError]]] = {MANUAL_ONLY: InvalidRequest}

    def check_credentials(self) -> None:
        """Nothing to check: an assisted channel holds no credential."""
        return None

    def render(self, content: PostContent, *, link: str | None = None) -> Rendered:
        """Title, HTML, plain text, summary, images and cover of the post."""
        return render_article(content, title_maxlen=self.title_maxlen, summary_maxlen=self.summary_maxlen)

    def publish(self, ctx: DeliveryContext) -> PublishResult:
        """``awaiting_manual`` with ``remote_id`` = the idempotency key (no call is made)."""
        return manual_publish(ctx)

    def status(self, ctx: DeliveryContext) -> StatusResult:
        """``published`` once the operator recorded the URL, else ``pending``."""
        return manual_status(ctx)

    def lookup(self, ctx: DeliveryContext) -> PublishResult | None:
        """Found only when the operator recorded the URL."""
        return manual_lookup(ctx)

    def metrics(self, ctxs: Iterable[DeliveryContext]) -> dict[int, Metrics]:
        """Not supported in assisted mode: no numbers can be read, so none are reported (empty dict)."""
        return {}

    def retract(self, ctx: DeliveryContext) -> None:
        """Not supported: raises :class:`InvalidRequest`; the operator deletes the post by hand."""
        raise manual_unsupported("retraction")

    def package(self, ctx: DeliveryContext, *, fetch: Fetch | None = None) -> bytes:
        """The delivery's ready-to-paste ZIP (see :func:`build_package`)."""
        return build_package(
            ctx.content,
            self.render(ctx.content, link=ctx.depends_on_url),
            delivery_id=ctx.delivery_id,
            platform=str(self.account.config.get("platform", "")),
            fetch=fetch,
        )
