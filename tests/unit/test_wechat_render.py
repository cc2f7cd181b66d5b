"""WeChat rendering and the adapter's pure helpers (no network)."""

from __future__ import annotations

import pickle
import struct
import zlib
from datetime import UTC, datetime

import pytest

from channels.base import AccountInfo, PostContent
from channels.errors import ContentRejected, InvalidRequest, QuotaExhausted
from channels.tokens import MemoryTokenCache
from channels.wechat import (
    CONTENT_MAX_CHARS,
    DIGEST_MAX,
    TITLE_MAX,
    TokenRejected,
    WeChatChannel,
    default_cover_png,
    key_of,
    msgid_from_article_url,
    with_key,
)


@pytest.fixture()
def ch() -> WeChatChannel:
    account = AccountInfo(1, "wechat", "t", {"appid": "wx1", "secret": "s"}, {"base_url": "http://127.0.0.1:9"})
    channel = WeChatChannel(account, token_cache=MemoryTokenCache())
    yield channel
    channel.close()


def test_title_and_digest_within_limits(ch: WeChatChannel) -> None:
    rendered = ch.render(PostContent(title="标题" * 40, body="正文" * 200))
    assert len(rendered.title) == TITLE_MAX and rendered.title.endswith("…")
    assert len(rendered.summary) == DIGEST_MAX and rendered.summary.startswith("正文正文")
    short = ch.render(PostContent(title="  多个   空白 ", body="x", summary="编辑写的摘要"))
    assert short.title == "多个 空白" and short.summary == "编辑写的摘要"


def test_markdown_converted_and_scripts_removed(ch: WeChatChannel) -> None:
    body = (
        "# 标题\n\n**粗体** and [link](https://example.org)\n\n"
        '<script>steal()</script>\n\n<p onclick="evil()">点击</p>\n\n[x](javascript:alert(1))\n\n'
        "<iframe src='https://evil.example'></iframe>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    html = ch.render(PostContent(title="t", body=body)).html
    assert "<h1>标题</h1>" in html and "<strong>粗体</strong>" in html and "<table>" in html
    for bad in ("<script", "steal", "onclick", 'href="javascript', "<iframe"):
        assert bad not in html, bad


def test_body_size_limit(ch: WeChatChannel) -> None:
    with pytest.raises(ContentRejected, match="20,000"):
        ch.render(PostContent(title="t", body="字" * CONTENT_MAX_CHARS))
    with pytest.raises(InvalidRequest):
        ch.render(PostContent(title="   ", body="x"))
    with pytest.raises(InvalidRequest):
        ch.render(PostContent(title="t", body="<script>only</script>"))


def test_images_listed_in_order(ch: WeChatChannel) -> None:
    rendered = ch.render(
        PostContent(title="t", body="![a](https://a/1.png) ![b](https://a/2.jpg) ![c](https://a/1.png)")
    )
    assert rendered.images == ("https://a/1.png", "https://a/2.jpg")


def test_idempotency_key_in_source_url() -> None:
    url = with_key("https://site.example/p/?lang=zh#top", "mm-7")
    assert url == "https://site.example/p/?lang=zh&mm_key=mm-7#top"
    assert key_of(url) == "mm-7" and key_of("https://site.example/p/") is None and key_of(None) is None


def test_msgid_from_article_url() -> None:
    url = "https://mp.weixin.qq.com/s?__biz=MzA&mid=2650000005&idx=2&sn=abc"
    assert msgid_from_article_url(url) == ("2650000005", 2)
    assert msgid_from_article_url("https://mp.weixin.qq.com/s/AbCdEf") is None


def test_default_cover_is_a_valid_png() -> None:
    data = default_cover_png()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) < 50_000
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (900, 383)
    idat_len = struct.unpack(">I", data[33:37])[0]
    raw = zlib.decompress(data[41 : 41 + idat_len])
    assert len(raw) == height * (1 + 3 * width)


def test_error_map_and_platform_time(ch: WeChatChannel) -> None:
    exc = ch.error_for(45009, "reach max api daily quota limit")
    assert isinstance(exc, QuotaExhausted) and exc.paused_until > datetime.now(UTC)
    assert exc.paused_until.astimezone().utcoffset() is not None
    # 00:00 Asia/Shanghai is 16:00 UTC
    assert (exc.paused_until.hour, exc.paused_until.minute) == (16, 0)
    assert isinstance(ch.error_for(40001, "x"), TokenRejected)
    assert type(ch.error_for(99999, "unknown")) is InvalidRequest
    restored = pickle.loads(pickle.dumps(exc))
    assert restored.paused_until == exc.paused_until and restored.code == 45009


def test_token_rejected_survives_pickling(ch: WeChatChannel) -> None:
    exc = ch.error_for(42001, "access_token expired")
    restored = pickle.loads(pickle.dumps(exc))
    assert type(restored) is TokenRejected and restored.code == 42001 and "expired" in str(restored)
