"""Feed bodies: RSS, Atom, JSON Feed; wrong and missing encodings; entity declarations; malformed; scripts."""

from __future__ import annotations

import pytest

from monitor.errors import FeedError
from monitor.parse import parse_feed
from monitor.text import plain_text, sanitize

RSS = (
    '<?xml version="1.0" encoding="{enc}"?><rss version="2.0"><channel><title>测试</title>'
    "<item><title>某厂拖欠工资</title><link>https://example.org/1</link><guid>g1</guid>"
    "<description><![CDATA[<p>工人讨薪<script>alert(1)</script><img src=x onerror=alert(1)>"
    '<a href="javascript:alert(1)">点我</a></p>]]></description>'
    "<pubDate>Tue, 01 Dec 2026 09:00:00 +0800</pubDate></item></channel></rss>"
)


def test_gbk_declared_in_the_xml_is_read() -> None:
    feed = parse_feed(RSS.format(enc="gb2312").encode("gb18030"))
    assert feed.entries[0].title == "某厂拖欠工资" and feed.entries[0].text == "工人讨薪点我"


def test_gbk_labelled_utf8_falls_back_to_gb18030() -> None:
    feed = parse_feed(RSS.format(enc="utf-8").encode("gbk"), content_type="application/xml; charset=utf-8")
    assert feed.entries[0].title == "某厂拖欠工资"
    assert any("not utf-8" in w for w in feed.warnings)


def test_utf8_labelled_latin1_is_read_as_utf8() -> None:
    feed = parse_feed(RSS.format(enc="iso-8859-1").encode("utf-8"), content_type="text/xml; charset=iso-8859-1")
    assert feed.entries[0].title == "某厂拖欠工资"


def test_scripts_handlers_and_javascript_links_are_removed() -> None:
    html = parse_feed(RSS.format(enc="utf-8").encode()).entries[0].summary_html
    assert "script" not in html and "onerror" not in html and "javascript" not in html
    assert "alert" not in plain_text("<p>a<script>alert(1)</script>b</p>")
    assert (
        sanitize('<a href="https://x.org">x</a>') == '<a href="https://x.org" rel="noopener noreferrer nofollow">x</a>'
    )


def test_entity_declarations_are_refused_before_parsing() -> None:
    body = b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><rss><channel></channel></rss>'
    with pytest.raises(FeedError, match="declares XML entities"):
        parse_feed(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b'<rss version="2.0"><channel><item><title>unclosed', "malformed feed"),
        (b"<!doctype html><html><body>login</body></html>", "malformed feed|not a feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": 3}', "no items list"),
        (b'{"a": 1}', "not a feed"),
        (b"\xff\xfe\xfa\x80\x81 junk", "cannot decode|malformed|not a feed"),
    ],
)
def test_bodies_that_are_no_feed_fail_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(FeedError, match=reason):
        parse_feed(body)


def test_json_feed_and_atom() -> None:
    json_feed = (
        '{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": [{"id": "1", "url": '
        '"https://e.org/1", "title": "加班", "content_html": "<p>强制加班</p>", '
        '"date_published": "2026-12-01T09:00:00+08:00"}]}'
    )
    entry = parse_feed(json_feed.encode(), content_type="application/feed+json").entries[0]
    assert (entry.guid, entry.title, entry.text) == ("1", "加班", "强制加班") and entry.published_at is not None
    atom = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>a</title>'
        '<entry><id>urn:1</id><title>社保</title><link href="https://e.org/2"/><updated>2026-12-01T01:00:00Z</updated>'
        '<content type="html">&lt;p&gt;社保断缴&lt;/p&gt;</content></entry></feed>'
    )
    entry = parse_feed(atom.encode()).entries[0]
    assert (entry.guid, entry.link, entry.text) == ("urn:1", "https://e.org/2", "社保断缴")
