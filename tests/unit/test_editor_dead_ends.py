"""The editor's last dead ends (issue 9, item 6): a cover uploaded as a file (its bytes checked, kept in the
database, scoped to the organisation tree), and a failed post edited into a new version, screened again and
retried with it — never sent with the old content.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from core.db import session_scope
from core.errors import Conflict, InvalidInput
from publisher import services
from publisher.delivery.context import post_content
from publisher.delivery.deliver import deliver
from publisher.domain.models import Delivery, Media, Post, PostVersion, Screening
from publisher.interfaces.api import app
from publisher.interfaces.cli import app as cli
from tests.support.people import CITY, NEIGHBOUR, PROVINCE, SYSTEM, Person, make_user


def png(width: int = 2, height: int = 2) -> bytes:
    """A real, small PNG (grey pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture()
def people(env: Path, rules_only: None) -> dict[str, Person]:
    return {
        "editor": make_user("editor", ("editor", CITY)),
        "province_editor": make_user("province_editor", ("editor", PROVINCE)),
        "neighbour_editor": make_user("neighbour_editor", ("editor", NEIGHBOUR)),
        "reviewer": make_user("reviewer", ("reviewer", CITY)),
        "two_hats": make_user("two_hats", ("editor", CITY), ("editor", NEIGHBOUR)),
    }


@pytest.fixture()
def accounts(people: dict[str, Person]) -> dict[str, int]:
    with session_scope() as s:
        return {
            org: services.add_account(s, SYSTEM, kind="manual", name=f"{org}号", credentials={}, organization=org).id
            for org in (PROVINCE, CITY, NEIGHBOUR)
        }


@pytest.fixture()
def client(people: dict[str, Person]) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _upload(client: TestClient, person: Person, data: bytes, name: str = "cover.png", **form: str):
    return client.post("/media", headers=person.headers, files={"file": (name, data, "image/png")}, data=form)


# ------------------------------------------------------------------------------------------ covers


def test_an_uploaded_cover_is_checked_kept_once_and_given_to_the_adapter_as_bytes(
    client: TestClient, people: dict[str, Person], accounts: dict[str, int]
) -> None:
    editor = people["editor"]
    image = png()
    r = _upload(client, editor, image)
    assert r.status_code == 201, r.text
    media = r.json()
    assert media["content_type"] == "image/png" and media["size"] == len(image)
    assert media["cover_url"] == f"media:{media['id']}"
    assert _upload(client, editor, image, "again.png").json()["id"] == media["id"]  # the same bytes: one row

    r = client.post(
        "/posts",
        headers=editor.headers,
        json={
            "title": "通知",
            "body": "工会开展职工技能培训。",
            "accounts": [accounts[CITY]],
            "cover_url": media["cover_url"],
        },
    )
    assert r.status_code == 201, r.text
    with session_scope() as s:
        version = s.get(PostVersion, s.get(Post, r.json()["id"]).current_version_id)
        assert version.cover_url == media["cover_url"]
    content = post_content(version)
    assert content.cover_url == "data:image/png;base64," + base64.b64encode(image).decode()
    assert post_content(version, with_cover=False).cover_url == media["cover_url"]

    shown = client.get(f"/media/{media['id']}", headers=editor.headers)
    assert shown.status_code == 200 and shown.content == image
    assert shown.headers["content-type"] == "image/png" and shown.headers["x-content-type-options"] == "nosniff"


def test_uploads_that_are_not_images_or_too_large_are_refused_in_one_line(
    client: TestClient, people: dict[str, Person], accounts: dict[str, int]
) -> None:
    editor = people["editor"]
    r = _upload(client, editor, b"<svg onload=alert(1)></svg>", "x.svg")
    assert r.status_code == 422 and r.json()["detail"] == "x.svg is not a JPEG, PNG, GIF, WebP or BMP image"
    r = _upload(client, editor, b"")
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    big = png() + b"\x00" * services.COVER_MAX_BYTES
    r = _upload(client, editor, big)
    assert r.status_code == 422 and r.json()["detail"].endswith(f"at most {services.COVER_MAX_BYTES} (10 MB)")
    r = _upload(client, editor, big + b"\x00" * 2**17)  # over the route's cap: refused before it is read
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    r = _upload(client, people["two_hats"], png())  # writes for two unions: must say which
    assert r.status_code == 422 and "organization" in r.json()["detail"]
    assert _upload(client, people["two_hats"], png(), organization=NEIGHBOUR).status_code == 201
    r = _upload(client, people["reviewer"], png())  # no editor anywhere
    assert r.status_code == 422
    r = _upload(client, people["reviewer"], png(), organization=CITY)
    assert r.status_code == 403
    with session_scope() as s:
        assert s.query(Media).count() == 1


def test_an_uploaded_cover_stays_inside_its_part_of_the_tree(
    client: TestClient, people: dict[str, Person], accounts: dict[str, int]
) -> None:
    city = _upload(client, people["editor"], png(3, 3)).json()
    province = _upload(client, people["province_editor"], png(4, 4)).json()
    neighbour = people["neighbour_editor"]
    assert client.get(f"/media/{city['id']}", headers=neighbour.headers).status_code == 403

    def create(person: Person, account: int, cover: str):
        body = {"title": "通知", "body": "工会开展职工技能培训。", "accounts": [account], "cover_url": cover}
        return client.post("/posts", headers=person.headers, json=body)

    r = create(neighbour, accounts[NEIGHBOUR], city["cover_url"])
    assert r.status_code == 422 and "another organisation" in r.json()["detail"]
    r = create(people["province_editor"], accounts[PROVINCE], city["cover_url"])
    assert (
        r.status_code == 422 and "another organisation" in r.json()["detail"]
    )  # a city's picture is not the province's
    assert create(people["editor"], accounts[CITY], province["cover_url"]).status_code == 201  # the province's serves
    assert client.get(f"/media/{province['id']}", headers=people["editor"].headers).status_code == 200
    r = create(people["editor"], accounts[CITY], "media:999")
    assert r.status_code == 422 and r.json()["detail"] == "cover media:999: no such uploaded image"
    r = create(people["editor"], accounts[CITY], "media:abc")
    assert r.status_code == 422


def test_the_cli_uploads_a_cover_file(
    people: dict[str, Person], accounts: dict[str, int], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MATRIX_TOKEN", people["editor"].token)
    image = tmp_path / "封面.png"
    image.write_bytes(png(5, 5))
    runner = CliRunner()
    args = ["post", "create", "-t", "通知", "--body", "工会开展职工技能培训。", "-a", str(accounts[CITY])]
    result = runner.invoke(cli, [*args, "--cover", str(image)])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        media = s.query(Media).one()
        assert media.filename == "封面.png" and media.organization_id is not None
        post = s.query(Post).one()
        assert post.current_version.cover_url == f"media:{media.id}"
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    result = runner.invoke(cli, [*args, "--cover", str(text)])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].endswith(
        "notes.txt is not a JPEG, PNG, GIF, WebP or BMP image"
    )
    result = runner.invoke(cli, [*args, "--cover", str(tmp_path / "missing.png")])
    assert result.exit_code == 2 and "no such file" in result.output


# ------------------------------------------------------------------------------- a failed post, edited


def _failed_post(editor: Person, account: int) -> tuple[int, int]:
    """A post screened, approved and sent, whose one delivery failed for good; returns (post id, delivery id)."""
    with session_scope() as s:
        post = services.create_post(
            s, editor.principal, title="通知", body="工会开展职工技能培训。", accounts=[account]
        )
        s.flush()
        s.add(Screening(version_id=post.current_version_id, decision="pass", verdict={"decision": "pass", "hits": []}))
        post.state = "failed"
        delivery = Delivery(
            post_id=post.id,
            version_id=post.current_version_id,
            account_id=account,
            state="failed",
            attempts=1,
            last_error="rest_invalid_param",
            progress={"media_id": "old-upload"},
        )
        s.add(delivery)
        s.flush()
        return post.id, delivery.id


def test_a_failed_post_is_edited_screened_again_and_retried_with_its_new_version(
    people: dict[str, Person], accounts: dict[str, int]
) -> None:
    editor, reviewer = people["editor"], people["reviewer"]
    post_id, delivery_id = _failed_post(editor, accounts[CITY])
    with session_scope() as s:
        post = services.edit_post(s, editor.principal, post_id, title="通知（更正）")
        assert post.state == "screening" and post.current_version.number == 2
    with session_scope() as s, pytest.raises(Conflict, match="retry it once that version is approved"):
        services.retry_post(s, editor.principal, post_id)
    with session_scope() as s:  # screening flags it this time: a person approves it
        post = s.get(Post, post_id)
        s.add(
            Screening(version_id=post.current_version_id, decision="review", verdict={"decision": "review", "hits": []})
        )
        post.state = "needs_review"
    with session_scope() as s:
        services.review(s, reviewer.principal, post_id, approve=True)
    with session_scope() as s, pytest.raises(Conflict, match="has failed deliveries; retry the post"):
        from core.clock import now

        services.schedule_post(s, editor.principal, post_id, now())
    with session_scope() as s:
        assert s.get(Post, post_id).state == "approved"
        services.retry_post(s, editor.principal, post_id)
    with session_scope() as s:
        post, delivery = s.get(Post, post_id), s.get(Delivery, delivery_id)
        assert post.state == "publishing"
        assert delivery.state == "pending" and delivery.version_id == post.current_version_id
        assert delivery.progress == {} and delivery.last_error is None  # nothing of the old attempt is reused


def test_a_delivery_whose_post_was_edited_is_never_sent_with_the_old_content(
    people: dict[str, Person], accounts: dict[str, int]
) -> None:
    editor = people["editor"]
    post_id, delivery_id = _failed_post(editor, accounts[CITY])
    with session_scope() as s:
        services.edit_post(s, editor.principal, post_id, body="更正后的正文。")
        s.get(Delivery, delivery_id).state = "pending"  # as if something had woken it with the old version
    assert deliver(delivery_id) == "skipped"
    with session_scope() as s:
        delivery = s.get(Delivery, delivery_id)
        assert delivery.state == "failed" and "edited after this delivery was made" in delivery.last_error
        assert s.get(Post, post_id).state == "screening"


def test_a_published_post_still_cannot_be_edited(people: dict[str, Person], accounts: dict[str, int]) -> None:
    editor = people["editor"]
    post_id, _ = _failed_post(editor, accounts[CITY])
    with session_scope() as s:
        s.get(Post, post_id).state = "partially_published"
    with session_scope() as s, pytest.raises(Conflict, match="retract it and create a corrected post"):
        services.edit_post(s, editor.principal, post_id, title="改")
    with pytest.raises(InvalidInput):
        with session_scope() as s:
            services.upload_image(s, editor.principal, None, b"GIF8")
