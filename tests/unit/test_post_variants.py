"""Per-platform texts (issue 11, item 2): a platform may get its own title or text. Each is screened and hashed
with the rest of the version (an approval covers it), shown where its hits are, given to that platform's adapter
only, and refused for a platform the post does not go to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from core.db import session_scope
from core.errors import InvalidInput
from publisher import services
from publisher.delivery.context import post_content
from publisher.domain.models import Post, PostVersion
from publisher.interfaces.api import app
from publisher.interfaces.cli import app as cli
from publisher.services.screening import run_screening
from tests.support.people import CITY, SYSTEM, Person, make_user, password_of

SHORT = "微博短文案：工会开展职工技能培训，详见网站。"


@pytest.fixture()
def editor(env: Path, rules_only: None) -> Person:
    return make_user("editor", ("editor", CITY))


@pytest.fixture()
def accounts(editor: Person) -> dict[str, int]:
    with session_scope() as s:
        weibo = services.add_account(
            s,
            SYSTEM,
            kind="weibo",
            name="市总工会微博",
            credentials={"access_token": "t", "uid": "1"},
            config={"base_url": "http://127.0.0.1:9/weibo", "safe_domain": "127.0.0.1", "rip": "127.0.0.1"},
            organization=CITY,
        )
        manual = services.add_account(s, SYSTEM, kind="manual", name="县融媒体", credentials={}, organization=CITY)
        return {"weibo": weibo.id, "manual": manual.id}


@pytest.fixture()
def client(editor: Person) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _post(client: TestClient, editor: Person, accounts: dict[str, int], **extra):
    body = {"title": "职工技能培训", "body": "工会开展职工技能培训。" * 20, "accounts": list(accounts.values())}
    return client.post("/posts", headers=editor.headers, json={**body, **extra})


def test_a_platform_gets_its_own_text_and_the_others_the_common_one(
    client: TestClient, editor: Person, accounts: dict[str, int]
) -> None:
    r = _post(client, editor, accounts, variants={"weibo": {"body": SHORT}})
    assert r.status_code == 201, r.text
    with session_scope() as s:
        version = s.get(Post, r.json()["id"]).current_version
        assert version.variants == {"weibo": {"body": SHORT}}
        assert ("weibo.body", SHORT) in version.screened_parts()
        assert SHORT in version.screened_text()
        plain = PostVersion.hash_content(version.title, version.body, version.summary, version.cover_url)
        assert version.content_hash != plain  # the approval is bound to the variant too
        assert post_content(version, kind="weibo").body == SHORT
        assert post_content(version, kind="manual").body == version.body
        assert post_content(version, kind="weibo").title == version.title  # no title variant: the common one


def test_a_hit_in_a_variant_is_placed_in_that_field(
    client: TestClient, editor: Person, accounts: dict[str, int]
) -> None:
    r = _post(client, editor, accounts, variants={"weibo": {"body": "加微信 13812345678 领取补贴"}})
    assert r.status_code == 201, r.text
    post_id = r.json()["id"]
    with session_scope() as s:
        version_id = s.get(Post, post_id).current_version_id
    run_screening(version_id)
    with session_scope() as s:
        detail = services.post_detail(s, editor.principal, post_id)
    fields = {h["where"]["field"] for h in detail["screening"]["hits"]}
    assert "weibo.body" in fields, detail["screening"]


@pytest.mark.parametrize(
    ("variants", "reason"),
    [
        ({"wechat": {"body": "公众号文案"}}, "the post goes to manual, weibo"),
        ({"weibo": {"text": "x"}}, "unknown field 'variants.weibo.text'"),
        ({"weibo": {"title": "标" * 201}}, "at most 200"),
    ],
)
def test_a_wrong_variant_is_refused_with_a_reason(
    client: TestClient, editor: Person, accounts: dict[str, int], variants: dict, reason: str
) -> None:
    r = _post(client, editor, accounts, variants=variants)
    assert r.status_code in (400, 422), r.text
    assert reason in r.text
    with session_scope() as s:
        assert s.query(Post).count() == 0  # nothing half-made


def test_editing_changes_or_removes_variants_and_needs_screening_again(
    client: TestClient, editor: Person, accounts: dict[str, int]
) -> None:
    post_id = _post(client, editor, accounts, variants={"weibo": {"body": SHORT}}).json()["id"]
    r = client.patch(f"/posts/{post_id}", headers=editor.headers, json={"title": "职工技能培训（更新）"})
    assert r.status_code == 200, r.text
    with session_scope() as s:
        assert s.get(Post, post_id).current_version.variants == {"weibo": {"body": SHORT}}  # kept when not given
    r = client.patch(f"/posts/{post_id}", headers=editor.headers, json={"variants": {}})
    assert r.status_code == 200, r.text
    with session_scope() as s:
        post = s.get(Post, post_id)
        assert post.current_version.variants == {} and post.current_version.number == 3
    with session_scope() as s:
        with pytest.raises(InvalidInput, match="goes to manual, weibo"):
            services.edit_post(s, editor.principal, post_id, variants={"toutiao": {"body": "x"}})


def test_the_cli_takes_variants_from_text_or_a_file(
    editor: Person, accounts: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MATRIX_TOKEN", editor.token)
    short = tmp_path / "short.md"
    short.write_text(SHORT, encoding="utf-8")
    runner = CliRunner()
    args = ["post", "create", "-t", "培训", "--body", "正文。", "-a", str(accounts["weibo"])]
    r = runner.invoke(cli, [*args, "--variant", f"weibo=@{short}", "--variant-title", "weibo=短标题"])
    assert r.exit_code == 0, r.output
    with session_scope() as s:
        post = s.query(Post).order_by(Post.id.desc()).first()
        assert post.current_version.variants == {"weibo": {"body": SHORT, "title": "短标题"}}
    r = runner.invoke(cli, ["post", "edit", str(post.id), "--variant", "weibo="])
    assert r.exit_code == 0, r.output
    with session_scope() as s:
        assert s.get(Post, post.id).current_version.variants == {"weibo": {"title": "短标题"}}
    r = runner.invoke(cli, [*args, "--variant", "weibo"])
    assert r.exit_code != 0 and "give KIND=TEXT" in r.output and "Traceback" not in r.output


def test_the_compose_page_offers_a_text_per_platform_and_the_preview_uses_it(
    client: TestClient, editor: Person, accounts: dict[str, int]
) -> None:
    r = client.post("/login", data={"name": "editor", "password": password_of("editor")}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/ui/compose")
    assert 'data-variant="weibo"' in page.text and 'data-pick="weibo"' in page.text
    assert 'data-variant="manual"' not in page.text  # a by-hand account posts what the package holds
    r = client.post(
        "/ui/preview",
        json={
            "title": "标题",
            "body": "通用正文",
            "accounts": [accounts["weibo"]],
            "variants": {"weibo": {"body": SHORT}},
        },
        headers={"X-CSRF-Token": client.cookies.get("mm_csrf")},
    )
    assert r.status_code == 200 and SHORT in r.text and "通用正文" not in r.text


def test_the_post_page_shows_each_variant_and_the_diff_covers_it(
    client: TestClient, editor: Person, accounts: dict[str, int]
) -> None:
    post_id = _post(client, editor, accounts, variants={"weibo": {"body": SHORT}}).json()["id"]
    client.patch(f"/posts/{post_id}", headers=editor.headers, json={"variants": {"weibo": {"body": "改后的微博文案"}}})
    client.post("/login", data={"name": "editor", "password": password_of("editor")}, follow_redirects=False)
    page = client.get(f"/ui/posts/{post_id}").text
    assert 'data-testid="variant-weibo.body"' in page and "改后的微博文案" in page
    assert "## weibo.body" in page  # the diff against the previous version names the variant that changed
