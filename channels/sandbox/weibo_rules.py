"""Weibo's text rules as the platform applies them to ``statuses/share.json``, written for the sandbox.

Kept apart from the adapter on purpose (the adapter has its own copy in ``channels/weibo.py``): a fake
that borrowed the adapter's counting would agree with any bug in it. What Weibo does, per Sina's web
counter (the one the post box shows, as reproduced by the WeCase client's ``tweetLength``) and the
``share.json`` documentation:

- **Links.** Weibo recognises ``http://`` and ``https://`` links made of the characters a URL may hold
  (RFC 3986: ASCII letters, digits, ``-._~:/?#[]@!$&'()*+,;=`` and ``%``); a link ends at the first other
  character, so Chinese text may follow it without a space.
- **Length.** The counter works in half-width units on the UTF-16 code units a browser sees: an ASCII
  unit costs one, any other unit two (so a Chinese character costs two and an emoji outside the BMP,
  two code units, costs four). Every link is replaced by a ``t.cn`` short link costing 20 units,
  whatever its length up to 140 units; a longer link costs its excess on top. The length in Chinese
  characters is half the units, rounded up; a status may have 140.
- **Safe domain.** The status must carry a link whose host is the app's registered safe domain
  (安全域名) or a subdomain of it.
- **Topics.** ``share.json`` refuses ``#话题#`` markers outside links.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

STATUS_MAX_CHARS = 140
SHORT_LINK_UNITS = 20  # half-width units of one t.cn link
LINK_UNITS_INCLUDED = 140  # a link up to this many units costs SHORT_LINK_UNITS, longer ones more

LINK_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
TOPIC_RE = re.compile(r"#[^#\s]+#")


def _units(text: str) -> int:
    """Half-width units of plain text, counted on UTF-16 code units as the browser counter does."""
    encoded = text.encode("utf-16-le")
    code_units = (int.from_bytes(encoded[i : i + 2], "little") for i in range(0, len(encoded), 2))
    return sum(1 if unit < 0x80 else 2 for unit in code_units)


def links(text: str) -> list[str]:
    """Every link Weibo recognises in ``text``, in order."""
    return LINK_RE.findall(text)


def status_length(text: str) -> int:
    """Length of a status in Chinese characters, as Weibo counts it against the 140 limit."""
    link_units = sum(SHORT_LINK_UNITS + max(0, _units(link) - LINK_UNITS_INCLUDED) for link in LINK_RE.findall(text))
    units = link_units + _units(LINK_RE.sub("", text))
    return -(-units // 2)  # a half character left over still costs a whole one


def _host(value: str) -> str:
    value = value.strip().lower()
    # a safe domain may be registered as a bare host ("example.gov.cn") or as a site URL
    parts = urlsplit(value if "://" in value else f"http://{value}")
    return (parts.hostname or "").rstrip(".")


def on_safe_domain(link: str, safe_domain: str) -> bool:
    """True if ``link``'s host is ``safe_domain`` or one of its subdomains (label by label)."""
    host, domain = _host(link).split("."), _host(safe_domain).split(".")
    if not domain or domain == [""] or host == [""]:
        return False
    return host[-len(domain) :] == domain


def has_topic(text: str) -> bool:
    """True if ``text`` holds a ``#topic#`` marker outside its links."""
    return TOPIC_RE.search(LINK_RE.sub(" ", text)) is not None
