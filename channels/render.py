"""Rendering helpers shared by the adapters: Markdown to safe HTML, plain text, truncation, images.

Editors write Markdown (raw HTML allowed); every platform gets HTML that went through an allow-list
sanitiser (nh3, the Python binding of ammonia), so a post can never carry scripts, event handlers or
``javascript:`` links to a platform, and platforms that strip unknown markup see only plain tags.
All functions here are pure.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from html.parser import HTMLParser

import nh3
from markdown_it import MarkdownIt

ELLIPSIS = "…"

# nh3's default allow-list, plus what Markdown produces and editors commonly use (image titles, link
# titles, code language classes). No style attributes: platforms rewrite or reject inline styles.
ALLOWED_TAGS: frozenset[str] = frozenset(nh3.ALLOWED_TAGS | {"figure", "figcaption"})
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "a": {"href", "title", "hreflang"},
    "img": {"src", "alt", "title", "width", "height"},
    "code": {"class"},
}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})

_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "tr", "table",
     "ul", "ol", "hr", "figure", "figcaption", "section", "article", "header", "footer"}
)  # fmt: skip


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # CommonMark plus the two GFM extensions editors expect; raw HTML is allowed here and cleaned later.
    return MarkdownIt("commonmark", {"html": True, "typographer": False}).enable(["table", "strikethrough"])


def sanitize_html(html: str, *, tags: Iterable[str] | None = None) -> str:
    """Clean HTML against the allow-list (``tags`` narrows it for stricter platforms).

    Script and style elements are dropped with their content; links get ``rel="noopener noreferrer"``.
    """
    allowed = set(tags) if tags is not None else set(ALLOWED_TAGS)
    return nh3.clean(
        html,
        tags=allowed,
        attributes={t: a for t, a in ALLOWED_ATTRIBUTES.items() if t in allowed},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer",
    )


def markdown_to_html(markdown: str) -> str:
    """Render Markdown (CommonMark + tables + strikethrough, inline HTML allowed) to sanitised HTML."""
    return sanitize_html(_markdown().render(markdown)).strip()


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
        if tag == "img":
            src = dict(attrs).get("src")
            if src:
                self.images.append(src)

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, one blank line between blocks."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def truncate(text: str, limit: int, *, ellipsis: str = ELLIPSIS, measure: Callable[[str], float] = len) -> str:
    """Cut ``text`` so that ``measure(result) <= limit``, ending with ``ellipsis`` when anything was cut.

    ``measure`` defaults to characters (code points: one Chinese character counts one); a platform that
    counts differently passes its own. Trailing whitespace before the ellipsis is removed.
    """
    if limit <= 0:
        return ""
    if measure(text) <= limit:
        return text
    if measure(ellipsis) > limit:
        ellipsis = ""
    # binary search on the prefix length: measure() is monotonic in the prefix for any sane counting
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(text[:mid].rstrip() + ellipsis) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + ellipsis


def image_urls(html: str) -> list[str]:
    """``src`` of every ``<img>`` in an HTML fragment, first occurrence order, without duplicates."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return list(dict.fromkeys(parser.images))


_SRC_RE = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]*)(")')


def replace_image_urls(html: str, mapping: Mapping[str, str]) -> str:
    """Replace ``<img src>`` URLs by ``mapping`` (e.g. to a platform's own uploaded copies).

    Meant for output of :func:`sanitize_html`, whose attributes are always double-quoted and
    entity-escaped, which is what makes a regular expression safe here.
    """

    def swap(match: re.Match[str]) -> str:
        url = html_lib.unescape(match.group(2))
        new = mapping.get(url)
        return match.group(0) if new is None else f"{match.group(1)}{html_lib.escape(new)}{match.group(3)}"

    return _SRC_RE.sub(swap, html)


def summarize(summary: str, body_text: str, limit: int) -> str:
    """The editor's summary if given, else the start of the body, within ``limit`` characters."""
    source = summary.strip() or re.sub(r"\s+", " ", body_text).strip()
    return truncate(source, limit)
