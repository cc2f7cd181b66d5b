"""Shared rendering helpers: sanitising, plain text, truncation, image URLs; image bytes (channels.media)."""

from __future__ import annotations

import base64
import binascii

import pytest

from channels.media import GIF, JPEG, PNG, WEBP, asset_bytes, decode_data_uri, image_type_for, sniff_image
from channels.render import (
    html_to_text,
    image_urls,
    markdown_to_html,
    replace_image_urls,
    sanitize_html,
    summarize,
    truncate,
)


def test_markdown_renders_gfm_tables_and_strikethrough() -> None:
    html = markdown_to_html("# 标题\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n~~旧~~ **新**")
    assert "<h1>标题</h1>" in html
    assert "<table>" in html and "<td>1</td>" in html
    assert "<s>旧</s>" in html and "<strong>新</strong>" in html


@pytest.mark.parametrize(
    "dangerous",
    [
        "<script>alert(1)</script>",
        '<img src="x.png" onerror="alert(1)">',
        '<a href="javascript:alert(1)">x</a>',
        "<iframe src='https://evil.example'></iframe>",
        "<style>body{display:none}</style>",
        '<p style="position:fixed">x</p>',
    ],
)
def test_sanitiser_removes_active_content(dangerous: str) -> None:
    html = markdown_to_html(f"正文\n\n{dangerous}")
    for needle in ("<script", "onerror", "javascript:", "<iframe", "<style", "style=", "alert(1)</"):
        assert needle not in html


def test_sanitiser_keeps_links_and_images() -> None:
    html = markdown_to_html('[官网](https://gov.example.cn/a?x=1&y=2 "t") ![图](https://img.example.cn/a.png)')
    assert 'href="https://gov.example.cn/a?x=1&amp;y=2"' in html
    assert 'rel="noopener noreferrer"' in html
    assert '<img src="https://img.example.cn/a.png" alt="图">' in html


def test_narrower_tag_list() -> None:
    assert sanitize_html("<h1>a</h1><p>b</p>", tags={"p"}) == "a<p>b</p>"


def test_plain_text_keeps_block_breaks_and_decodes_entities() -> None:
    assert html_to_text("<h1>A &amp; B</h1><p>第一段</p><p>第二段<br>下一行</p>") == "A & B\n\n第一段\n\n第二段\n下一行"
    assert html_to_text(markdown_to_html("**粗体** 与 `代码`")) == "粗体 与 代码"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("你好世界", 4, "你好世界"),  # fits exactly: untouched
        ("你好世界！", 4, "你好世…"),  # characters, not bytes
        ("hello world", 7, "hello…"),  # trailing space trimmed before the ellipsis
        ("abc", 0, ""),
        ("abcdef", 1, "…"),
    ],
)
def test_truncate_by_characters(text: str, limit: int, expected: str) -> None:
    out = truncate(text, limit)
    assert out == expected
    assert len(out) <= limit


def test_truncate_with_platform_measure() -> None:
    def double_width(s: str) -> float:  # e.g. a platform counting CJK as 2
        return sum(2 if ord(c) > 0x2E80 else 1 for c in s)

    out = truncate("中文中文中文", 7, measure=double_width)
    assert double_width(out) <= 7
    assert out == "中文中…"


def test_image_urls_in_order_without_duplicates() -> None:
    html = markdown_to_html("![a](http://x/1.png) ![b](http://x/2.png) ![c](http://x/1.png)")
    assert image_urls(html) == ["http://x/1.png", "http://x/2.png"]


def test_replace_image_urls_escapes_new_url() -> None:
    html = markdown_to_html("![a](http://x/1.png) ![b](http://x/2.png)")
    out = replace_image_urls(html, {"http://x/1.png": "https://cdn/1.png?a=1&b=2"})
    assert image_urls(out) == ["https://cdn/1.png?a=1&b=2", "http://x/2.png"]
    assert "a=1&amp;b=2" in out


def test_summarize_prefers_editor_summary() -> None:
    assert summarize("  编者摘要 ", "正文", 10) == "编者摘要"
    assert summarize("", "正文  很长\n的内容", 5) == "正文 很…"


# ---------------------------------------------------------------------------------- image bytes

TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (TINY_PNG, "png"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 16, "jpeg"),
        (b"GIF89a" + b"\x00" * 8, "gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
        (b"BM" + b"\x00" * 16, "bmp"),
        (b"\xff\xd8jpeg-ish", None),  # SOI alone is not enough
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"<html>not found</html>", None),
        (b"", None),
    ],
)
def test_images_are_told_by_their_bytes(data: bytes, expected: str | None) -> None:
    kind = sniff_image(data)
    assert (kind.name if kind else None) == expected


def test_image_type_from_content_type_or_url() -> None:
    assert image_type_for(mime="image/png; charset=binary") is PNG
    assert image_type_for(mime="application/octet-stream", url="https://cdn.example/a/b.JPEG?x=1") is JPEG
    assert image_type_for(url="https://cdn.example/a.webp") is WEBP and image_type_for(url="https://x/b.gif") is GIF
    assert image_type_for(url="https://cdn.example/photo") is None and image_type_for() is None
    assert (JPEG.mime, JPEG.extension) == ("image/jpeg", "jpg")


def test_data_uris_decode_to_bytes_and_type() -> None:
    b64 = base64.b64encode(TINY_PNG).decode()
    assert decode_data_uri(f"data:image/png;base64,{b64}") == (TINY_PNG, "image/png")
    # percent-escaped base64 and whitespace are what editors paste; both decode
    assert decode_data_uri(f"data:image/png;base64,{b64[:20]} {b64[20:].replace('+', '%2B')}")[0] == TINY_PNG
    assert decode_data_uri("data:,A%20brief%20note") == (b"A brief note", "text/plain")
    assert decode_data_uri("data:image/svg+xml,%3Csvg%2F%3E") == (b"<svg/>", "image/svg+xml")
    with pytest.raises(binascii.Error):
        decode_data_uri("data:image/png;base64,not*base64")
    for bad in ("https://example.org/a.png", "data:image/png;base64"):
        with pytest.raises(ValueError):
            decode_data_uri(bad)


def test_default_cover_is_shipped_as_a_file() -> None:
    data = asset_bytes("default_cover.png")
    assert sniff_image(data) is PNG and asset_bytes("default_cover.png") is data  # read once
