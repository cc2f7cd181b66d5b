"""Contract table of the assisted (manual) adapter, and the contents of its download package.

The adapter makes no request, so the cases run without a sandbox: publish waits for an operator, the
operator's recorded URL makes it published, retraction and metrics are for a person to do.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import pytest

from channels.base import AccountInfo, Channel, PostContent
from channels.errors import InvalidRequest
from channels.manual import Manual, build_package
from tests.support.contract import ContractCase, make_ctx, run_case

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
CONTENT = PostContent(
    title="关于开展安全检查的通知",
    body=(
        "各单位：\n\n为落实**安全生产**责任，现通知如下。\n\n"
        "![现场照片](https://img.example.cn/b/photo.png)\n\n![示意图](https://img.example.cn/a/plan.jpg)\n\n"
        "![丢失的图](https://img.example.cn/missing.png)\n\n<script>alert(1)</script>"
    ),
    summary="",
    cover_url="https://img.example.cn/cover.jpg",
    author="工会宣传部",
)


def fake_fetch(url: str) -> bytes:
    """The images the package downloads, without a network; an unknown address fails like a 404."""
    files = {
        "https://img.example.cn/b/photo.png": PNG,
        "https://img.example.cn/a/plan.jpg": b"\xff\xd8\xffjpeg-plan",
        "https://img.example.cn/cover.jpg": b"\xff\xd8\xffc",
    }
    if url not in files:
        raise OSError(f"404 for {url}")
    return files[url]


def publish_twice(ch: Channel, sb: Any) -> Any:
    ctx = make_ctx()
    first, second = ch.publish(ctx), ch.publish(ctx)
    return first, second, ctx


def confirmed_by_operator(ch: Channel, sb: Any) -> Any:
    ctx = make_ctx()
    ch.publish(ctx)
    before = (ch.lookup(ctx), ch.status(ctx).state)
    ctx.remote_url = "https://www.toutiao.com/item/7300000000000000001/"  # `matrix delivery confirm`
    return before, ch.lookup(ctx), ch.status(ctx)


CASES: list[ContractCase] = [
    ContractCase("no credential to check", None, lambda ch, sb: ch.check_credentials(), lambda r, sb: r is None),
    ContractCase(
        "publish waits for an operator",
        None,
        publish_twice,
        lambda out, sb: (
            out[0] == out[1]
            and out[0].state == "awaiting_manual"
            and out[0].remote_id == out[2].idempotency_key
            and out[2].progress == {"manual": out[2].idempotency_key}
        ),
    ),
    ContractCase(
        "the operator's URL makes it published",
        None,
        confirmed_by_operator,
        lambda out, sb: (
            out[0] == (None, "pending")
            and out[1].state == "published"
            and out[1].url == out[2].url
            and out[2].state == "published"
        ),
    ),
    ContractCase(
        "retraction is by hand",
        None,
        lambda ch, sb: ch.retract(make_ctx(remote_id="mm-1")),
        InvalidRequest,
        code="manual_only",
    ),
    ContractCase(
        "no metrics to collect", None, lambda ch, sb: ch.metrics([make_ctx(remote_id="x")]), lambda m, sb: m == {}
    ),
]


def factory(transport: Any) -> Channel:
    account = AccountInfo(id=41, kind="manual", name="某平台（人工）", credentials={}, config={"platform": "小红书"})
    return Manual(account)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract(case: ContractCase) -> None:
    run_case(factory, case, None)


def test_class_declares_what_it_cannot_do() -> None:
    assert Manual.supports_retract is False and Manual.supports_metrics is False


# ------------------------------------------------------------------------------------------ package


@pytest.fixture(scope="module")
def package() -> zipfile.ZipFile:
    channel = factory(None)
    ctx = make_ctx(CONTENT, delivery_id=777)
    data = channel.package(ctx, fetch=fake_fetch)
    channel.close()
    return zipfile.ZipFile(io.BytesIO(data))


def test_package_lists_every_part(package: zipfile.ZipFile) -> None:
    assert sorted(package.namelist()) == [
        "README.txt",
        "article.html",
        "article.txt",
        "cover.jpg",
        "images/01.png",
        "images/02.jpg",
        "manifest.json",
        "title.txt",
    ]


def test_package_texts(package: zipfile.ZipFile) -> None:
    assert package.read("title.txt").decode() == CONTENT.title + "\n"
    text = package.read("article.txt").decode()
    assert "为落实安全生产责任，现通知如下。" in text and "<" not in text and "alert" not in text
    page = package.read("article.html").decode()
    assert '<meta charset="utf-8">' in page and "<strong>安全生产</strong>" in page
    assert "<script" not in page  # sanitised
    # images point at the packaged copies; the one that could not be fetched keeps its address
    assert 'src="images/01.png"' in page and 'src="images/02.jpg"' in page
    assert 'src="https://img.example.cn/missing.png"' in page


def test_package_images_and_cover(package: zipfile.ZipFile) -> None:
    assert package.read("images/01.png") == PNG
    assert package.read("images/02.jpg") == b"\xff\xd8\xffjpeg-plan"
    assert package.read("cover.jpg") == b"\xff\xd8\xffc"
    manifest = json.loads(package.read("manifest.json"))
    assert manifest["delivery_id"] == 777 and manifest["platform"] == "小红书" and manifest["author"] == "工会宣传部"
    assert [i["file"] for i in manifest["images"]] == ["images/01.png", "images/02.jpg", None]


def test_package_readme_has_the_steps(package: zipfile.ZipFile) -> None:
    readme = package.read("README.txt").decode()
    assert "matrix delivery confirm 777 --url <URL>" in readme
    assert "on 小红书" in readme and "cover.jpg" in readme and "Author: 工会宣传部" in readme
    assert "https://img.example.cn/missing.png" in readme  # told to fetch it by hand


def test_package_is_deterministic() -> None:
    rendered = factory(None).render(CONTENT)
    assert build_package(CONTENT, rendered, fetch=fake_fetch) == build_package(CONTENT, rendered, fetch=fake_fetch)


def test_package_without_images_or_cover() -> None:
    plain = PostContent(title="纯文字通知", body="只有文字。")
    archive = zipfile.ZipFile(io.BytesIO(build_package(plain, factory(None).render(plain), fetch=fake_fetch)))
    assert sorted(archive.namelist()) == ["README.txt", "article.html", "article.txt", "manifest.json", "title.txt"]
    assert "pick one" in archive.read("README.txt").decode()


def test_package_cover_from_a_data_uri() -> None:
    """A cover given inline (a ``data:`` URI, here with ``+`` percent-escaped) is packaged as the file it is."""
    inline = "data:image/png;base64," + base64.b64encode(PNG).decode().replace("+", "%2B")
    plain = PostContent(title="内嵌封面", body="正文。", cover_url=inline)
    archive = zipfile.ZipFile(io.BytesIO(build_package(plain, factory(None).render(plain), fetch=fake_fetch)))
    assert archive.read("cover.png") == PNG
    assert json.loads(archive.read("manifest.json"))["cover"]["file"] == "cover.png"
