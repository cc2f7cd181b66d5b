"""CLI input errors (one line, exit 2) and the production compose file's commands.

The CLI acts as a signed-in person: ``site_a`` makes ``chief`` (admin and editor of 省总工会) and signs in.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from publisher.interfaces.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
ORG = "省总工会"
PASSWORD = "chief's long password"


@pytest.fixture()
def signed_in(env, tmp_path, monkeypatch):
    """The fresh installation (``env``) with ``chief`` (admin and editor of 省总工会) signed in."""
    from core.db import session_scope
    from publisher import services

    monkeypatch.setenv("MATRIX_CLI_CONFIG_DIR", str(tmp_path / "cli-config"))
    monkeypatch.delenv("MATRIX_TOKEN", raising=False)
    with session_scope() as s:
        services.ensure_organization(s, ORG)
        services.create_user(s, None, "chief", PASSWORD, [("admin", ORG), ("editor", ORG)])
    result = runner.invoke(app, ["login", "--user", "chief", "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output


@pytest.fixture()
def site_a(signed_in):
    """``signed_in`` plus one website account of 省总工会, ``site-a``, where nothing listens."""
    result = runner.invoke(
        app,
        [
            "account",
            "add",
            "website",
            "site-a",
            "--credentials",
            '{"username": "u", "app_password": "p"}',
            "--config",
            '{"base_url": "http://127.0.0.1:1/wp/a"}',
            "--no-check",  # no platform runs here
        ],
    )
    assert result.exit_code == 0, result.output


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_compose_services_use_existing_cli_commands() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    commands = {c.name or c.callback.__name__ for c in app.registered_commands} | {
        g.name for g in app.registered_groups
    }
    checked = 0
    for name, service in compose["services"].items():
        command = service.get("command")
        if not command or service.get("image", "").startswith(("postgres", "redis")):
            continue
        argv = command if isinstance(command, list) else shlex.split(command)
        assert argv[0] == "matrix", name
        assert argv[1] in commands, f"service {name}: `matrix {argv[1]}` does not exist"
        result = runner.invoke(app, [*argv[1:], "--help"])
        assert result.exit_code == 0, f"service {name}: {result.output}"
        checked += 1
    assert checked >= 5  # migrate, api, worker, beat, flower


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["post", "create", "-t", "标题", "--body", "正文", "-a", "nosuch"], ["account 'nosuch' not found"]),
        (["post", "create", "-t", "标题", "--body", "   ", "-a", "site-a"], ["body is empty"]),
        (
            ["post", "create", "-t", "标题", "--body", "正文", "-a", "site-a", "--at", "2020-01-01 09:00"],
            ["in the past"],
        ),
        (
            ["post", "create", "-t", "标题", "--body", "正文", "-a", "site-a", "--at", "next tuesday"],
            ["cannot read time"],
        ),
        (["post", "create", "-t", "标题", "--body", "x" * 200_001, "-a", "site-a"], ["at most 200000"]),
        (["post", "create", "-t", "标题", "-f", "/nonexistent/file.md", "-a", "site-a"], ["cannot read"]),
        (["post", "show", "999"], ["post 999 not found"]),
        (["post", "approve", "999"], ["not found"]),
        (["post", "override", "999", "--reason", "false positive"], ["post 999 not found"]),
        (["account", "add", "myspace", "x", "--credentials", "{}"], ["unknown channel kind"]),
        (["account", "add", "website", "x", "--credentials", "{not json"], ["not valid JSON"]),
        (["delivery", "removed", "999"], ["delivery 999 not found"]),
    ],
)
def test_bad_input_is_one_line_exit_2(site_a, args, fragments) -> None:
    _one_line_error(runner.invoke(app, args), *fragments)


def test_bad_input_loses_nothing(site_a) -> None:
    from sqlalchemy import func, select

    from core.db import session_scope
    from publisher.domain.models import Post

    runner.invoke(app, ["post", "create", "-t", "标题", "--body", "正文", "-a", "site-a", "--at", "2020-01-01"])
    with session_scope() as s:
        assert s.scalar(select(func.count(Post.id))) == 0  # nothing half-created


def test_migrations_match_the_models(env) -> None:
    from alembic import command

    from publisher import migrate

    command.check(migrate.alembic_config())  # raises if the models have changes no migration covers


def test_times_are_shown_in_the_configured_zone(site_a) -> None:
    """Stored in UTC; `post show` and the API show MATRIX_TIMEZONE (Asia/Shanghai by default)."""
    from core.db import session_scope
    from publisher.domain.models import Post
    from publisher.services import post_summary

    created = runner.invoke(
        app, ["post", "create", "-t", "标题", "--body", "正文", "-a", "site-a", "--at", "2099-12-01 09:00"]
    )
    assert created.exit_code == 0, created.output
    shown = runner.invoke(app, ["post", "show", "1"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "schedule: 2099-12-01 09:00:00 CST" in shown.output, shown.output
    with session_scope() as s:
        info = post_summary(s, s.get(Post, 1))
    assert info["schedule"]["due_at"] == "2099-12-01T09:00:00+08:00"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["terms", "add", "省总工会", "蓝鲸", "--category", "nonsense"], ["unknown category 'nonsense'"]),
        (["terms", "add", "省总工会", "蓝鲸", "--severity", "maybe"], ["severity must be"]),
        (["terms", "add", "省总工会", "蓝鲸", "--list", "grey"], ["list must be"]),
        (["terms", "add", "无此单位", "蓝鲸"], ["organisation '无此单位' not found"]),
        (["terms", "add", "省总工会", "x" * 201], ["at most 200"]),
    ],
)
def test_bad_terms_are_refused_before_they_can_break_screening(site_a, args, fragments) -> None:
    from core.db import session_scope
    from publisher.services import ensure_organization

    with session_scope() as s:
        ensure_organization(s, "省总工会")
    _one_line_error(runner.invoke(app, args), *fragments)


def test_an_organisation_term_added_twice_is_updated_and_screens_posts(site_a) -> None:
    """The second `terms add` of a term changes its severity (no crash on the unique key), and the next
    screening of the organisation's post uses the list at once."""
    from core.db import session_scope
    from publisher import services
    from publisher.domain.models import Organization, Post

    with session_scope() as s:
        org = services.ensure_organization(s, "省总工会")  # site-a's organisation
        org_id = org.id
    first = runner.invoke(app, ["terms", "add", "省总工会", "蓝鲸"])
    assert first.exit_code == 0 and "added '蓝鲸' (custom, review)" in first.output, first.output
    again = runner.invoke(app, ["terms", "add", "省总工会", "蓝鲸", "--severity", "block"])
    assert again.exit_code == 0 and "updated '蓝鲸' (custom, block)" in again.output, again.output
    with session_scope() as s:
        assert s.get(Organization, org_id).lists_version == 2
        body = "内部代号蓝鲸的项目进展顺利。"
        post = services.create_post(s, services.SYSTEM, title="项目进展", body=body, accounts=[1])
        post_id, version_id = post.id, post.current_version_id
    with session_scope() as s:
        screening = services.screen_version(s, version_id)
        assert screening.decision == "reject"
        assert s.get(Post, post_id).state == "rejected"


def test_a_post_whose_screening_message_was_lost_is_screened_again(site_a, monkeypatch) -> None:
    """The database says which versions wait for screening; reconcile wakes them up again."""
    from datetime import timedelta

    from core import broker
    from core.clock import now
    from core.db import session_scope
    from publisher import services
    from publisher.domain.models import Post

    sent: list[tuple] = []

    class LostMessages:  # the broker end of enqueue: every message is recorded and goes nowhere
        def send_task(self, name: str, args: list, **_options) -> None:
            sent.append((name, *args))

    monkeypatch.setattr(broker, "sender_app", LostMessages)
    with session_scope() as s:
        post = services.create_post(s, services.SYSTEM, title="标题", body="正文", accounts=[1], submit=False)
        post_id = post.id
        services.submit_post(s, services.SYSTEM, post_id)  # its wake-up is lost (the stub above swallows it)
    assert services.requeue_stale_screenings(older_than_s=60) == 0  # too recent: its message may be on its way
    with session_scope() as s:
        p = s.get(Post, post_id)
        p.updated_at = now() - timedelta(minutes=5)
        version_id = p.current_version_id
    sent.clear()
    assert services.requeue_stale_screenings(older_than_s=60) == 1
    assert sent == [("matrix.screen_version", version_id)]
    with session_scope() as s:
        services.screen_version(s, version_id)
    assert services.requeue_stale_screenings(older_than_s=60) == 0  # screened: nothing waits any more


def test_up_refuses_a_port_in_use_before_starting_anything(tmp_path, monkeypatch) -> None:
    """Another `matrix up` on the same ports would otherwise answer this one's readiness checks."""
    import socket

    from core.settings import reset_settings

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("MATRIX_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("MATRIX_API_PORT", str(port))
        reset_settings()
        try:
            result = runner.invoke(app, ["up"])
            _one_line_error(result, f"127.0.0.1:{port} (API) is in use", "MATRIX_API_PORT")
        finally:
            reset_settings()
    assert not (tmp_path / "matrix.db").exists()  # refused before migrating or starting anything


def test_account_add_and_reauth_check_the_credentials_with_the_platform(site_a, sandbox_server) -> None:
    """A wrong password is found when the account is added, not at its first post; nothing is stored then."""
    import json

    from sqlalchemy import func, select

    from channels.sandbox.wordpress import DEMO_PASSWORD
    from core.db import session_scope
    from publisher.domain.models import Account

    def add(password: str) -> object:
        creds = json.dumps({"username": "editor", "app_password": password})
        config = json.dumps({"base_url": f"{sandbox_server.url}/wp/demo"})
        return runner.invoke(app, ["account", "add", "website", "官网", "--credentials", creds, "--config", config])

    _one_line_error(add("wrong password"), "website refused these credentials", "incorrect_password")
    with session_scope() as s:
        assert s.scalar(select(func.count(Account.id))) == 1  # only the fixture's account
    added = add(DEMO_PASSWORD)
    assert added.exit_code == 0 and "added: website 官网" in added.output, added.output

    # The fixture's account points at a port where nothing listens: the check cannot be made, and says so.
    new = json.dumps({"username": "u", "app_password": "q"})
    refused = runner.invoke(app, ["account", "reauth", "1", "--credentials", new])
    _one_line_error(refused, "cannot check the credentials")
    unchecked = runner.invoke(app, ["account", "reauth", "1", "--credentials", new, "--no-check"])
    assert unchecked.exit_code == 0, unchecked.output

    no_address = runner.invoke(app, ["account", "add", "website", "站", "--credentials", new])
    _one_line_error(no_address, "website account not usable", "config.base_url")
    manual = runner.invoke(app, ["account", "add", "manual", "手工", "--credentials", "{}"])  # nothing to ask
    assert manual.exit_code == 0, manual.output


def test_post_show_says_where_each_hit_is(site_a) -> None:
    """A reviewer sees the field and the words around each hit, not offsets into the joined text."""
    from core.db import session_scope
    from publisher import services
    from publisher.domain.models import Post

    with session_scope() as s:
        post = services.create_post(
            s, services.SYSTEM, title="报名通知", body="报名请致电王老师 13800138000，谢谢。", accounts=[1]
        )
        version_id = post.current_version_id
    with session_scope() as s:
        services.screen_version(s, version_id)
        info = services.post_summary(s, s.get(Post, 1))
    (hit,) = info["screening"]["hits"]
    assert hit["where"] == {"field": "body", "start": 9, "end": 20, "before": "报名请致电王老师 ", "after": "，谢谢。"}
    shown = runner.invoke(app, ["post", "show", "1"], env={"COLUMNS": "200"})
    assert "privacy (pii, mobile) in the body: …报名请致电王老师 13800138000，谢谢。…" in shown.output, shown.output


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def test_a_command_before_the_database_is_set_up_says_how_to_set_it_up(tmp_path, monkeypatch, backend) -> None:
    """No traceback from a database without tables (a command run before `make run`): one line, exit 2."""
    from core.settings import reset_settings
    from tests.support.stack import pg_database_or_skip

    monkeypatch.setenv("MATRIX_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MATRIX_CLI_CONFIG_DIR", str(tmp_path / "cli"))
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "token").write_text("mm_signed_in_elsewhere")  # a sign-in kept from another installation
    monkeypatch.delenv("MATRIX_DATABASE_URL", raising=False)
    drop = None
    if backend == "postgresql":
        url, drop = pg_database_or_skip()  # created, never migrated
        monkeypatch.setenv("MATRIX_DATABASE_URL", url)
        monkeypatch.setenv("MATRIX_SECRET_KEY", "test-" + "k" * 40)
    reset_settings()
    try:
        for args in (["monitor", "source", "list"], ["post", "list"]):
            _one_line_error(runner.invoke(app, args), "the database has no table", "matrix db upgrade")
    finally:
        reset_settings()
        if drop is not None:
            drop()


def test_a_setting_that_does_not_validate_is_one_line_for_every_command(env, monkeypatch) -> None:
    from core.settings import reset_settings

    monkeypatch.setenv("MATRIX_DELIVERY_BATCH", "0")
    monkeypatch.setenv("MATRIX_WORKER_CONCURRENCY", "two")
    reset_settings()
    try:
        for argv in (["whoami"], ["worker", "--kind", "delivery"], ["account", "list"]):
            result = runner.invoke(app, argv)
            lines = result.output.strip().splitlines()
            assert result.exit_code == 2 and len(lines) == 1, (argv, result.output)
            assert lines[0].startswith("error: bad setting MATRIX_WORKER_CONCURRENCY: ")
            assert "MATRIX_DELIVERY_BATCH: Input should be greater than or equal to 1" in lines[0]
            assert "Traceback" not in result.output and "'two'" not in result.output  # no value echoed
    finally:
        monkeypatch.delenv("MATRIX_DELIVERY_BATCH")
        monkeypatch.delenv("MATRIX_WORKER_CONCURRENCY")
        reset_settings()
