"""Text of items: sanitised HTML to show, plain text to score, and the keys that find exact duplicates.

Pure (no IO). Item HTML comes from strangers: :func:`sanitize` keeps an allow-list of tags and attributes
(ammonia, through ``nh3``: scripts, event handlers, ``javascript:`` links and styles are dropped) before any
page can show it; :func:`plain_text` is what scoring, rules and clustering read.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

import nh3

# What an item's summary may keep: text structure, links and images; no script, style, iframe, form or handler.
_TAGS = {"a", "b", "blockquote", "br", "code", "em", "i", "img", "li", "ol", "p", "pre", "strong", "ul", "span"}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt"}}
_BLOCK_END = re.compile(r"(?i)</(p|div|li|h[1-6]|blockquote|pre|tr)>|<br\s*/?>")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"[ \t\r\f\v\u3000\xa0]+")
_LINES = re.compile(r"\n\s*\n+")


def sanitize(fragment: str) -> str:
    """HTML safe to show: allowed tags and attributes only, links with ``rel="noopener noreferrer"``."""
    return nh3.clean(
        fragment or "",
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https"},
        link_rel="noopener noreferrer nofollow",
    )


def plain_text(fragment: str) -> str:
    """The readable text of an HTML fragment (sanitised first, so no script body leaks into the text)."""
    cleaned = sanitize(fragment)
    with_breaks = _BLOCK_END.sub("\n", cleaned)
    text = html.unescape(_TAG.sub("", with_breaks))
    text = unicodedata.normalize("NFC", text)
    lines = (_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _LINES.sub("\n", "\n".join(lines)).strip()


def canonical_link(link: str) -> str:
    """A link as compared for duplicates: scheme and host lower-cased, fragment and trailing slash dropped."""
    link = (link or "").strip()
    if not link:
        return ""
    try:
        parts = urlsplit(link)
    except ValueError:
        return link
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def sha256(text: str) -> str:
    """Hex SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def content_key(title: str, text: str) -> str:
    """The exact-duplicate key of an item's content: case, spaces and punctuation do not count."""
    return sha256(_NON_WORD.sub("", f"{title}\n{text}".lower()))


def entry_key(guid: str, link: str, title: str, text: str) -> str:
    """A source's own key for an entry: its GUID, else its link, else its title and text (Miniflux's rule)."""
    if guid:
        return sha256("guid:" + guid.strip())
    if link:
        return sha256("link:" + canonical_link(link))
    return sha256("content:" + title + "\n" + text)
