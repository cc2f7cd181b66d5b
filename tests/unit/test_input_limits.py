"""Limits on every input (issue 10 item 3): request bodies capped before they are read, `/screen` and every text
field bounded, ids outside the database's integer range not found (404, not 500), `limit`/`offset` bounded, and
the CLI's arguments and paths checked with one-line errors. What held before stays: one-line 4xx answers for
malformed JSON, bad UTF-8 and deep nesting.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from core.db import ID_MAX, session_scope
from core.errors import InvalidInput
from core.settings import get_settings, reset_settings
from publisher import migrate, services
from publisher.interfaces.api import app
from publisher.interfaces.cli import app as cli
from publisher.services.screening import configure_moderation
from tests.support.people import PROVINCE, SYSTEM, Person, make_user, password_of
from tests.support.routes import all_routes

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("MATRIX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
runner = CliRunner()

# ------------------------------------------------------------------------------------------- fixtures


def _fresh(mp: pytest.MonkeyPatch, data_dir: Path, database_url: str | None = None) -> Person:
    """A fresh installation in ``data_dir`` (on ``database_url`` if given), rules-only screening, one account of
    the province, and its admin (also its editor and reviewer): returned, and signed in for the CLI
    (``MATRIX_TOKEN``)."""
    for name in ("MATRIX_DATABASE_URL", "MATRIX_BROKER_URL", "MATRIX_SECRET_KEY", "MATRIX_OLD_SECRET_KEYS"):
        mp.delenv(name, raising=False)
    mp.setenv("MATRIX_DATA_DIR", str(data_dir))
    mp.setenv("MATRIX_MODERATION_CLASSIFIER", "0")
    if database_url:
        mp.setenv("MATRIX_DATABASE_URL", database_url)
        mp.setenv("MATRIX_SECRET_KEY", "test-" + "k" * 40)  # required outside the embedded default
    reset_settings()
    configure_moderation()
    migrate.upgrade()
    with session_scope() as session:
        services.add_account(
            session, SYSTEM, kind="manual", name="by-hand", credentials={}, config={}, organization=PROVINCE
        )
    person = make_user("admin", ("admin", PROVINCE), ("editor", PROVINCE), ("reviewer", PROVINCE))
    mp.setenv("MATRIX_TOKEN", person.token)
    return person


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh embedded installation (SQLite database and broker under a temporary folder)."""
    _fresh(monkeypatch, tmp_path / "var")
    yield tmp_path
    reset_settings()
    configure_moderation()


def _postgresql_database() -> tuple[str, Any]:
    """A new, empty PostgreSQL database and a function that drops it; skipped (or failed, where CI requires the
    services) when PostgreSQL is unreachable."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = f"limits_{uuid.uuid4().hex[:10]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("MATRIX_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable: {exc.orig}")
        pytest.skip("PostgreSQL unreachable")

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


@pytest.fixture(params=["embedded", "postgresql"])
def installation(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh installation on each backend: SQLite's integers end at 2**63, PostgreSQL's INTEGER at 2**31."""
    drop = None
    url = None
    if request.param == "postgresql":
        url, drop = _postgresql_database()
    try:
        _fresh(monkeypatch, tmp_path / "var", url)
        yield request.param
    finally:
        reset_settings()
        configure_moderation()
        if drop is not None:
            drop()


@pytest.fixture
def client(request: pytest.FixtureRequest) -> TestClient:
    """The API in-process, signed in as the installation's admin (also editor and reviewer); a server error
    comes back as a 500 answer, as a client would see it."""
    # The installation first (whichever the test asked for): its admin's token is what the client sends.
    request.getfixturevalue("installation" if "installation" in request.fixturenames else "embedded")
    headers = {"Authorization": f"Bearer {os.environ['MATRIX_TOKEN']}"}
    return TestClient(app, raise_server_exceptions=False, headers=headers)


def _one_line_4xx(response: Any, status: int | None = None) -> str:
    """Assert a 4xx whose body is one line of JSON with a ``detail``; return the detail as text."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status, (response.status_code, response.text[:300])
    assert "\n" not in response.text.strip() and "Traceback" not in response.text, response.text[:300]
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


# ------------------------------------------------------------------------------- bodies, before reading


def _signed_in() -> list[tuple[bytes, bytes]]:
    """The raw header of the installation's admin (:func:`_fresh`)."""
    return [(b"authorization", f"Bearer {os.environ['MATRIX_TOKEN']}".encode())]


def _asgi(path: str, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]) -> tuple[int, bytes, int]:
    """Call the app directly with a body given chunk by chunk; returns (status, body, chunks read)."""
    read = 0
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal read
        chunk = next(chunks, None)
        read += 1
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return answer["status"], answer["body"], read


@pytest.mark.parametrize("path", ["/posts", "/accounts", "/screen", "/posts/1/approve"])
def test_a_15_mb_body_is_refused_before_a_byte_of_it_is_read(embedded: Path, path: str) -> None:
    def never() -> Iterator[bytes]:
        raise AssertionError("the body was read")
        yield b""

    status, body, read = _asgi(path, [(b"content-length", b"15000000"), *_signed_in()], never())
    assert status == 413 and read == 0
    assert "too large" in json.loads(body)["detail"]
    # Not signed in, it is refused at the door, unread as well.
    status, body, read = _asgi(path, [(b"content-length", b"15000000")], never())
    assert status == 401 and read == 0
    assert "sign in" in json.loads(body)["detail"]


def test_a_streamed_body_without_length_is_cut_off_at_the_cap(embedded: Path) -> None:
    chunk = b" " * 65536
    sent = (chunk for _ in range(15 * 16))  # 15 MB, chunked: no Content-Length to go by
    status, body, read = _asgi("/accounts", [(b"transfer-encoding", b"chunked"), *_signed_in()], sent)
    assert status == 413, body
    assert json.loads(body) == {"detail": "request body is too large: at most 1000000 bytes here"}
    assert read <= get_settings().api_body_max_bytes // len(chunk) + 2  # stopped at the cap, not at the end


def test_a_malformed_content_length_is_one_line_400(embedded: Path) -> None:
    status, body, _ = _asgi("/accounts", [(b"content-length", b"lots"), *_signed_in()], iter([b"{}"]))
    assert status == 400 and json.loads(body) == {"detail": "invalid Content-Length header"}


def test_a_post_of_the_longest_body_escaped_is_not_refused_by_the_cap(embedded: Path, client: TestClient) -> None:
    # 200,000 Chinese characters as Python's json.dumps sends them (\uXXXX): 1.2 MB, over the default 1 MB cap.
    post = {"title": "长文", "body": "汉" * get_settings().body_max_chars, "accounts": [1]}
    payload = json.dumps(post).encode()
    assert len(payload) > get_settings().api_body_max_bytes
    response = client.post("/posts", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text[:300]


# ------------------------------------------------------------------------------------------- /screen


def test_screen_refuses_a_text_over_its_limit_with_the_reason(embedded: Path, client: TestClient) -> None:
    limit = get_settings().screen_max_chars
    assert client.post("/screen", json={"text": "你好" * 10}).status_code == 200
    detail = _one_line_4xx(client.post("/screen", json={"text": "字" * (limit + 1)}), 422)
    assert detail == f"text is {limit + 1} characters; at most {limit}"
    # Far over it, the body itself is refused before it is read or screened.
    assert "too large" in _one_line_4xx(client.post("/screen", json={"text": "字" * 1_000_000}), 413)
    assert _one_line_4xx(client.post("/screen", json={}), 422) == "text is empty"


# --------------------------------------------------------------------------------------------- ids

_OUT_OF_RANGE = [0, -1, 2**31, 2**63, 2**64]

# Every route with an id in its path, with a body that passes validation, and the kind of row the id names.
_ID_ROUTES: dict[tuple[str, str], tuple[str, dict[str, Any] | None, dict[str, str]]] = {
    ("DELETE", "/auth/tokens/{token_id}"): ("token", None, {}),
    ("POST", "/users/{user_id}/disable"): ("user", None, {}),
    ("POST", "/users/{user_id}/password"): ("user", {"password": "a-new-password"}, {}),
    ("POST", "/users/{user_id}/roles"): ("user", {"role": "editor", "organization": PROVINCE}, {}),
    ("POST", "/accounts/{account_id}/reauthorize"): ("account", {}, {"check": "false"}),
    ("GET", "/posts/{post_id}"): ("post", None, {}),
    ("GET", "/media/{media_id}"): ("media", None, {}),
    ("GET", "/monitor/sources/{source_id}"): ("source", None, {}),
    ("POST", "/monitor/sources/{source_id}/pause"): ("source", None, {}),
    ("POST", "/monitor/sources/{source_id}/resume"): ("source", None, {}),
    ("GET", "/monitor/sources/{source_id}/cursors"): ("source", None, {}),
    ("GET", "/monitor/stories/{story_id}"): ("story", None, {}),
    ("DELETE", "/monitor/alert-channels/{channel_id}"): ("alert channel", None, {}),
    ("PATCH", "/posts/{post_id}"): ("post", {"title": "新标题"}, {}),
    ("DELETE", "/posts/{post_id}"): ("post", None, {}),
    ("POST", "/posts/{post_id}/submit"): ("post", None, {}),
    ("POST", "/posts/{post_id}/unschedule"): ("post", None, {}),
    ("POST", "/posts/{post_id}/duplicate"): ("post", None, {}),
    ("POST", "/posts/{post_id}/schedule"): ("post", {"at": "now"}, {}),
    ("POST", "/posts/{post_id}/approve"): ("post", {}, {}),
    ("POST", "/posts/{post_id}/reject"): ("post", {"reason": "不合适"}, {}),
    ("POST", "/posts/{post_id}/override"): ("post", {"reason": "误报"}, {}),
    ("POST", "/posts/{post_id}/retry"): ("post", None, {}),
    ("POST", "/posts/{post_id}/retract"): ("post", None, {}),
    ("POST", "/live-flags/{flag_id}/retract"): ("live flag", None, {}),
    ("POST", "/live-flags/{flag_id}/keep"): ("live flag", {"reason": "比武是正常活动"}, {}),
    ("GET", "/deliveries/{delivery_id}/package"): ("delivery", None, {}),
    ("POST", "/deliveries/{delivery_id}/confirm"): ("delivery", {"url": "https://example.org/p/1"}, {}),
    ("POST", "/deliveries/{delivery_id}/removed"): ("delivery", None, {}),
    ("POST", "/organizations/{org_id}/terms"): ("organization", {"term": "词"}, {}),
    ("GET", "/organizations/{org_id}/terms"): ("organization", None, {}),
    ("GET", "/organizations/{org_id}/review-chain"): ("organisation", None, {}),
    ("PUT", "/organizations/{org_id}/review-chain"): ("organisation", {"steps": [{"role": "reviewer"}]}, {}),
    ("GET", "/organizations/{org_id}/aliases"): ("organisation", None, {}),
    ("POST", "/organizations/{org_id}/aliases"): ("organisation", {"alias": "省总"}, {}),
    ("DELETE", "/organizations/{org_id}/aliases"): ("organisation", None, {"alias": "省总"}),
    ("POST", "/notifications/{notification_id}/read"): ("notification", None, {}),
}


def test_the_id_table_covers_every_route_with_an_id() -> None:
    with_ids = {
        (method, route.path)
        for route in all_routes(app)
        if isinstance(route, APIRoute) and "_id}" in route.path and not route.path.startswith("/ui/")
        for method in route.methods
    }
    assert with_ids == set(_ID_ROUTES)


@pytest.mark.parametrize("obj_id", _OUT_OF_RANGE)
def test_ids_out_of_the_databases_range_are_not_found(installation: str, client: TestClient, obj_id: int) -> None:
    for (method, template), (kind, body, query) in _ID_ROUTES.items():
        path = template.split("{")[0] + str(obj_id) + template.split("}")[1]
        response = client.request(method, path, json=body, params=query)
        assert response.status_code == 404, (method, path, response.status_code, response.text[:300])
        assert response.json() == {"detail": f"{kind} {obj_id} not found"}, (method, path)


@pytest.mark.parametrize("ref", [2**31, 2**63, str(2**31), str(2**63), "²"])
def test_account_ids_out_of_range_in_a_post_body_are_not_found(
    installation: str, client: TestClient, ref: int | str
) -> None:
    response = client.post("/posts", json={"title": "标题", "body": "正文", "accounts": [ref]})
    # Digits are an id, whether sent as a number or a string; anything else is a name (quoted).
    expected = f"account {ref!r} not found" if ref == "²" else f"account {ref} not found"
    assert _one_line_4xx(response, 404) == expected


def test_a_nul_character_is_a_4xx_on_every_backend(installation: str, client: TestClient) -> None:
    # PostgreSQL's text columns refuse NUL; SQLite stores it. Either way no 500.
    response = client.post("/posts", json={"title": "标\x00题", "body": "正文", "accounts": [1]})
    assert response.status_code in (201, 422), response.text[:300]
    if installation == "postgresql":
        assert "database refused a value" in _one_line_4xx(response, 422)


# ----------------------------------------------------------------------------------- limit / offset

_LISTS = ["/posts", "/accounts", "/reviews", "/notifications"]


@pytest.mark.parametrize("path", _LISTS)
@pytest.mark.parametrize(
    ("param", "value", "reason"),
    [
        ("limit", 0, "limit must be between 1 and 500"),
        ("limit", -1, "limit must be between 1 and 500"),
        ("limit", 501, "limit must be between 1 and 500"),
        ("limit", 2**63, "limit must be between 1 and 500"),
        ("offset", -1, f"offset must be between 0 and {ID_MAX}"),
        ("offset", 2**63, f"offset must be between 0 and {ID_MAX}"),
    ],
)
def test_limit_and_offset_out_of_range_are_one_line_422(
    embedded: Path, client: TestClient, path: str, param: str, value: int, reason: str
) -> None:
    sep = "&" if "?" in path else "?"
    assert _one_line_4xx(client.get(f"{path}{sep}{param}={value}"), 422) == reason


def test_lists_page(embedded: Path, client: TestClient) -> None:
    with session_scope() as session:
        for n in range(3):
            services.create_post(session, SYSTEM, title=f"标题{n}", body="正文", accounts=[1], submit=False)
    titles = [p["title"] for p in client.get("/posts?limit=2&offset=1").json()]
    assert titles == ["标题1", "标题0"]
    assert [a["name"] for a in client.get("/accounts?limit=1").json()] == ["by-hand"]
    assert client.get("/accounts?offset=1").json() == []


# --------------------------------------------------------------------------------------- text fields

# Bounded by a setting (MATRIX_BODY_MAX_CHARS, MATRIX_SCREEN_MAX_CHARS), checked at each request, and by the
# route's body cap: not in the schema.
_BOUNDED_BY_A_SETTING = {
    ("PostIn", "body"),
    ("PostEdit", "body"),
    ("VariantIn", "body"),
    ("ScreenIn", "text"),
    ("Body_upload_media_media_post", "file"),  # bytes, not text: the route's body cap and COVER_MAX_BYTES
}


def _strings(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The string schemas in a property's schema (itself, its anyOf branches, its array items)."""
    found = [prop] if prop.get("type") == "string" else []
    for branch in prop.get("anyOf", []):
        found += _strings(branch)
    if "items" in prop:
        found += _strings(prop["items"])
    return found


def test_every_text_field_of_the_api_is_bounded() -> None:
    spec = app.openapi()
    unbounded = []
    for model, schema in spec["components"]["schemas"].items():
        if model.endswith("ValidationError"):
            continue
        for field, prop in schema.get("properties", {}).items():
            if (model, field) in _BOUNDED_BY_A_SETTING:
                continue
            unbounded += [f"{model}.{field}" for s in _strings(prop) if "maxLength" not in s]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for param in operation.get("parameters", []):
                where = f"{method} {path} {param['name']}"
                unbounded += [where for s in _strings(param["schema"]) if "maxLength" not in s]
    assert unbounded == []


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/posts", {"title": "标" * 201, "body": "正文", "accounts": [1]}),
        ("/posts", {"title": "标题", "body": "正文", "accounts": [1], "cover_url": "https://x/" + "a" * 2000}),
        ("/posts", {"title": "标题", "body": "正文", "accounts": [1], "summary": "摘" * 1001}),
        ("/posts", {"title": "标题", "body": "正文", "accounts": ["名" * 201]}),
        ("/accounts", {"kind": "manual", "name": "名" * 201, "credentials": {}, "check": False}),
        ("/posts/1/reject", {"reason": "因" * 2001}),
        ("/deliveries/1/confirm", {"url": "https://x/" + "a" * 2000}),
        ("/organizations/1/terms", {"term": "词" * 201}),
        (
            "/users",
            {"name": "人" * 101, "password": password_of("x"), "roles": [{"role": "editor", "organization": 1}]},
        ),
        ("/auth/tokens", {"name": "人" * 101}),
        ("/auth/login", {"name": "人" * 101, "password": password_of("x")}),
    ],
)
def test_a_text_field_over_its_bound_is_422(embedded: Path, client: TestClient, route: str, body: dict) -> None:
    assert "at most" in _one_line_4xx(client.post(route, json=body), 422)


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/posts", {"title": "标题", "body": "正文", "accounts": [1], "author": "editor"}, "author"),
        ("/posts/1", {"title": "新标题", "actor": "editor"}, "actor"),
        ("/posts/1/approve", {"reviewer": "reviewer"}, "reviewer"),
        ("/posts/1/schedule", {"at": "now", "schedule_at": "now"}, "schedule_at"),
    ],
)
def test_no_body_names_who_is_acting_and_unknown_fields_are_refused(
    embedded: Path, client: TestClient, route: str, body: dict, field: str
) -> None:
    # Who acts is whoever is signed in: a body cannot name another author or reviewer (nor be 201 characters of
    # one). A field the API does not know is a one-line 422, not silently dropped.
    method = "PATCH" if route == "/posts/1" else "POST"
    assert _one_line_4xx(client.request(method, route, json=body), 422) == f"unknown field {field!r}"


def test_the_services_bound_the_same_fields_for_the_cli(embedded: Path) -> None:
    with session_scope() as session:
        with pytest.raises(InvalidInput, match="summary is 1001 characters; at most 1000"):
            services.create_post(session, SYSTEM, title="标题", body="正文", accounts=[1], summary="摘" * 1001)
        with pytest.raises(InvalidInput, match="user name is 101 characters; at most 100"):
            services.create_user(session, SYSTEM, "人" * 101, password_of("x"), [("editor", PROVINCE)])


# ------------------------------------------------------------------------------- what held, still holds


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b'{"title": ', 422),  # malformed JSON
        (b'{"title": "\xff\xfe"}', 400),  # not UTF-8
        (b"[" * 100_000 + b"]" * 100_000, 400),  # nested past the parser's recursion limit
    ],
)
def test_malformed_bodies_stay_one_line_4xx(embedded: Path, client: TestClient, payload: bytes, status: int) -> None:
    response = client.post("/posts", content=payload, headers={"content-type": "application/json"})
    _one_line_4xx(response, status)


# ------------------------------------------------------------------------------------------------ CLI


def _one_line_error(result: Any, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["post", "create", "-t", "\udcff", "--body", "x", "-a", "1"], "the value of -t is not valid UTF-8: b'\\xff"),
        (["account", "add", "website", "a\udcfe", "--credentials", "{}"], "an argument is not valid UTF-8"),
        (["post", "list", "--state", "d\udcffraft"], "the value of --state is not valid UTF-8"),
    ],
)
def test_cli_arguments_that_are_not_utf8_are_one_line_exit_2(embedded: Path, args: list[str], fragment: str) -> None:
    _one_line_error(runner.invoke(cli, args), fragment)


def test_cli_invalid_utf8_from_a_real_shell_is_one_line_exit_2(embedded: Path) -> None:
    # As a shell hands it over: raw bytes in argv (matrix post create -t $'\xff' ...).
    run = subprocess.run(
        [sys.executable, "-m", "publisher.interfaces.cli", "post", "create", "-t", b"\xff", "--body", "x", "-a", "1"],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    assert run.returncode == 2, run.stderr.decode(errors="replace")
    assert run.stderr.decode().strip() == "error: the value of -t is not valid UTF-8: b'\\xff'"
    assert run.stdout == b""


def test_cli_stdin_that_is_not_utf8_is_one_line_exit_2(embedded: Path) -> None:
    result = runner.invoke(cli, ["post", "create", "-t", "标题", "-f", "-", "-a", "1"], input=b"\xff\xfe")
    _one_line_error(result, "standard input is not UTF-8 text")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["delivery", "package", "1", "-o", "/no/such/dir/f.zip"], "folder /no/such/dir does not exist"),
        (["delivery", "package", "1", "-o", "{tmp}"], "it is a folder"),
        (["screen", "-i", "{tmp}/in.jsonl", "-o", "/no/such/dir/out.jsonl"], "cannot write /no/such/dir/out.jsonl"),
        (["post", "create", "-t", "标题", "-f", "{tmp}", "-a", "1"], "cannot read"),
    ],
)
def test_cli_paths_that_cannot_be_used_are_one_line_exit_2(embedded: Path, args: list[str], fragment: str) -> None:
    (embedded / "in.jsonl").write_text('{"id": 1, "text": "你好"}\n', encoding="utf-8")
    args = [a.replace("{tmp}", str(embedded)) for a in args]
    _one_line_error(runner.invoke(cli, args), fragment)


@pytest.mark.parametrize("obj_id", [2**31, 2**63, 2**70])
def test_cli_ids_out_of_range_are_not_found(embedded: Path, obj_id: int) -> None:
    _one_line_error(runner.invoke(cli, ["post", "show", str(obj_id)]), f"post {obj_id} not found")
    _one_line_error(runner.invoke(cli, ["delivery", "removed", str(obj_id)]), f"delivery {obj_id} not found")
    _one_line_error(runner.invoke(cli, ["post", "list", "--limit", str(obj_id)]), "limit must be between 1 and 500")
