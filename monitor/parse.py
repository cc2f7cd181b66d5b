"""Feed bodies to entries: RSS and Atom through feedparser, JSON Feed through ``json``, all from bytes we fetched.

Pure (no IO: feedparser is handed a ``BytesIO``, never a string it could take for a URL or a path). The body is
decoded here first, so that what feedparser reads is UTF-8 whatever the server said:

1. the byte-order mark, else the HTTP charset, else the XML declaration's encoding, else UTF-8, else GB18030
   (the superset of GBK and GB2312 that Chinese sites without a charset use) — the first that decodes strictly;
   a declared single-byte charset (ISO-8859-1, windows-1252) loses to UTF-8 when the bytes are valid UTF-8,
   since those charsets decode anything and a mislabelled Chinese feed would read as mojibake;
2. any ``<!ENTITY`` declaration is refused before parsing: feeds have no use for one, and it is how entity
   expansion ("billion laughs") and external entities come in;
3. feedparser parses; a feed it had to repair (``bozo``) is kept if it still gave entries, refused otherwise.

HTML in summaries and contents is sanitised (:func:`monitor.text.sanitize`) and reduced to plain text here.
"""

from __future__ import annotations

import calendar
import codecs
import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser

from monitor.errors import FeedError
from monitor.models import NAME_MAX, TITLE_MAX, URL_MAX
from monitor.text import plain_text, sanitize

TEXT_MAX = 20_000  # characters of an item's text kept (scoring and matching read this much at most)
HTML_MAX = 100_000  # characters of an item's sanitised HTML kept

_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")
_XML_DECL_STR = re.compile(r"^(\s*<\?xml[^>]*?encoding\s*=\s*[\"'])([A-Za-z0-9._:-]+)([\"'])")
_ENTITY_DECL = re.compile(r"<!ENTITY", re.IGNORECASE)
_SINGLE_BYTE = {"latin-1", "iso8859-1", "cp1252", "ascii", "iso8859-15"}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass
class Entry:
    """One entry of a feed, as the monitor stores it (text fields bounded, HTML sanitised)."""

    guid: str
    link: str
    title: str
    summary_html: str
    text: str
    author: str = ""
    published_at: datetime | None = None
    # a comment on one of our posts (monitor.comments): its GUID is its identity, so two readers who write the
    # same words are two items, and ``origin`` names the delivery, account and post it was written under
    identity: str = ""
    origin: dict[str, Any] | None = None


@dataclass
class ParsedFeed:
    """What a feed body gave: its title, entries (at most ``max_entries``) and warnings (repairs made)."""

    title: str
    entries: list[Entry] = field(default_factory=list)
    encoding: str = "utf-8"
    warnings: list[str] = field(default_factory=list)


def _codec(name: str) -> str | None:
    try:
        return codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None


def _http_charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset" and value:
            return value.strip()
    return None


def decode_body(content: bytes, content_type: str = "") -> tuple[str, str, list[str]]:
    """``(text, encoding, warnings)`` for a body; :class:`FeedError` if no candidate charset decodes it."""
    warnings: list[str] = []
    for bom, name in _BOMS:
        if content.startswith(bom):
            try:
                return content.decode(name), name, warnings
            except UnicodeDecodeError as exc:
                raise FeedError(f"the body starts with a {name} byte-order mark but is not {name}") from exc
    declared: list[tuple[str, str]] = []
    if (charset := _http_charset(content_type)) is not None:
        declared.append(("HTTP", charset))
    if (m := _XML_DECL.match(content[:500])) is not None:
        declared.append(("XML declaration", m.group(1).decode("ascii")))
    candidates: list[tuple[str, str]] = []
    for where, name in declared:
        codec = _codec(name)
        if codec is None:
            warnings.append(f"unknown charset {name!r} in the {where}")
            continue
        if codec in _SINGLE_BYTE and not content.isascii() and _valid_utf8(content):
            warnings.append(f"{where} says {name} but the bytes are UTF-8")
            continue
        candidates.append((where, codec))
    candidates += [("fallback", "utf-8"), ("fallback", "gb18030")]
    for where, codec in candidates:
        try:
            text = content.decode(codec)
        except (UnicodeDecodeError, LookupError):
            if where != "fallback":
                warnings.append(f"{where} says {codec} but the bytes are not {codec}")
            continue
        return text, codec, warnings
    raise FeedError("cannot decode the body: it is neither the declared charset, UTF-8 nor GB18030")


def _valid_utf8(content: bytes) -> bool:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse_feed(content: bytes, *, content_type: str = "", url: str = "", max_entries: int = 200) -> ParsedFeed:
    """Parse a fetched body (RSS, Atom or JSON Feed); :class:`FeedError` with the reason if it is none of them."""
    if not content.strip():
        raise FeedError("empty body: no feed")
    text, encoding, warnings = decode_body(content, content_type)
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{") or "json" in content_type.lower():
        parsed = _parse_json_feed(stripped, max_entries)
    else:
        parsed = _parse_xml_feed(text, url, max_entries)
    parsed.encoding = encoding
    parsed.warnings = warnings + parsed.warnings
    return parsed


def _parse_xml_feed(text: str, url: str, max_entries: int) -> ParsedFeed:
    if _ENTITY_DECL.search(text):
        raise FeedError("refused: the feed declares XML entities (entity expansion is not allowed)")
    utf8 = _XML_DECL_STR.sub(r"\g<1>utf-8\g<3>", text, count=1).encode("utf-8")
    headers = {"content-type": "application/xml; charset=utf-8"}
    if url:
        headers["content-location"] = url  # relative links resolve against the feed, as a browser would
    try:
        # feedparser's own sanitiser is off: every HTML field goes through nh3 in _entry (sanitize, plain_text),
        # and a second, slower pass cost ~10 % of a poll's parse
        result = feedparser.parse(io.BytesIO(utf8), response_headers=headers, sanitize_html=False)
    except Exception as exc:  # feedparser raises rarely; whatever it raises, it is this body's fault
        raise FeedError(f"malformed feed: {type(exc).__name__}: {_first_line(exc)}") from exc
    warnings: list[str] = []
    # An entry with no title, text or link is what a repaired, truncated body leaves: nothing to keep.
    entries = [e for e in (_xml_entry(e) for e in result.entries[:max_entries]) if e.title or e.text or e.link]
    if result.get("bozo"):
        reason = f"{type(result.bozo_exception).__name__}: {_first_line(result.bozo_exception)}"
        if not entries:
            raise FeedError(f"malformed feed: {reason}")
        warnings.append(f"repaired: {reason}")
    if not result.get("version") and not entries:
        raise FeedError("not a feed: no RSS, Atom or JSON Feed found in the body")
    return ParsedFeed(title=_bounded(result.feed.get("title", ""), TITLE_MAX), entries=entries, warnings=warnings)


def _first_line(exc: object) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else "unknown error"


def _bounded(value: Any, limit: int) -> str:
    text = str(value or "").strip()
    return text[:limit]


def _link(value: Any) -> str:
    link = str(value or "").strip()
    return link if len(link) <= URL_MAX and link.lower().startswith(("http://", "https://")) else ""


def _xml_entry(e: Any) -> Entry:
    html = ""
    for content in e.get("content", []) or []:
        if len(content.get("value", "")) > len(html):
            html = content.get("value", "")
    summary = e.get("summary", "") or ""
    if len(summary) > len(html):
        html = summary
    published = e.get("published_parsed") or e.get("updated_parsed")
    return _entry(
        guid=str(e.get("id", "") or ""),
        link=e.get("link", ""),
        title=plain_text(str(e.get("title", "") or "")),
        html=html,
        author=str(e.get("author", "") or ""),
        published_at=datetime.fromtimestamp(calendar.timegm(published), UTC) if published else None,
    )


def _entry(*, guid: str, link: Any, title: str, html: str, author: str, published_at: datetime | None) -> Entry:
    safe_html = sanitize(html[: HTML_MAX * 2])[:HTML_MAX]
    return Entry(
        guid=guid.strip()[:URL_MAX],
        link=_link(link),
        title=_bounded(title, TITLE_MAX),
        summary_html=safe_html,
        text=plain_text(safe_html)[:TEXT_MAX],
        author=_bounded(author, NAME_MAX),
        published_at=published_at,
    )


def _parse_json_feed(text: str, max_entries: int) -> ParsedFeed:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FeedError(f"malformed JSON Feed: {_first_line(exc)}") from exc
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise FeedError("not a feed: JSON without a JSON Feed version")
    items = data.get("items")
    if not isinstance(items, list):
        raise FeedError("malformed JSON Feed: no items list")
    entries = []
    for item in items[:max_entries]:
        if not isinstance(item, dict):
            continue
        html = item.get("content_html") or ""
        if not html and item.get("content_text"):
            html = "<p>" + _escape(str(item["content_text"])) + "</p>"
        if not html and item.get("summary"):
            html = "<p>" + _escape(str(item["summary"])) + "</p>"
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
        author = next((str(a.get("name", "")) for a in authors if isinstance(a, dict)), "")
        entries.append(
            _entry(
                guid=str(item.get("id", "") or ""),
                link=item.get("url", ""),
                title=plain_text(str(item.get("title", "") or "")),
                html=str(html),
                author=author,
                published_at=_rfc3339(item.get("date_published") or item.get("date_modified")),
            )
        )
    return ParsedFeed(title=_bounded(data.get("title", ""), TITLE_MAX), entries=entries)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _rfc3339(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
