"""The CLI as a signed-in person: login/logout/whoami, users, tokens, the review chain, the audit trail."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from core.db import session_scope
from publisher import services
from publisher.domain.models import Post
from publisher.interfaces.cli import app

runner = CliRunner()
PROVINCE, CITY = "省总工会", "市总工会"
PASSWORD = "a long password 1"


@pytest.fixture()
def home(env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fresh installation (``env``) with the CLI's config folder in ``tmp_path`` and no MATRIX_TOKEN."""
    folder = tmp_path / "cli-config"
    monkeypatch.setenv("MATRIX_CLI_CONFIG_DIR", str(folder))
    monkeypatch.delenv("MATRIX_TOKEN", raising=False)
    return folder


@pytest.fixture()
def people(home: Path) -> Path:
    """A province with a city below it, an admin, an editor, two reviewers and a monitor; one website account."""
    with session_scope() as s:
        province = services.ensure_organization(s, PROVINCE)
        services.ensure_organization(s, CITY, parent=province)
        for name, roles in (
            ("admin", [("admin", PROVINCE)]),
            ("editor", [("editor", PROVINCE), ("reviewer", PROVINCE)]),
            ("reviewer", [("reviewer", PROVINCE)]),
            ("reviewer2", [("reviewer", PROVINCE)]),
            ("monitor", [("monitor", PROVINCE)]),
        ):
            services.create_user(s, services.SYSTEM, name, PASSWORD, roles)
        services.add_account(s, services.SYSTEM, kind="website", name="site-a", credentials={"u": "p"},
                             config={"base_url": "http://127.0.0.1:1/wp/a"}, organization=PROVINCE)  # fmt: skip
    return home


def login(name: str, password: str = PASSWORD):
    return runner.invoke(app, ["login", "--user", name, "--password-stdin"], input=password + "\n")


def signed_in(name: str) -> None:
    result = login(name)
    assert result.exit_code == 0, result.output


def one_line_error(result, *fragments: str, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def ok(args: list[str], **kwargs):
    result = runner.invoke(app, args, **kwargs)
    assert result.exit_code == 0, result.output
    return result


# ------------------------------------------------------------------------------------------ signing in


def test_login_whoami_logout(people: Path) -> None:
    result = login("editor")
    assert result.exit_code == 0, result.output
    assert "signed in as editor (editor@省总工会, reviewer@省总工会)" in result.output
    token_file = people / "token"
    token = token_file.read_text().strip()
    assert token.startswith("mm_") and token not in result.output  # stored, never printed
    if os.name == "posix":
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    who = ok(["whoami"])
    assert who.output.splitlines()[0] == "editor"
    assert "editor@省总工会" in who.output and "reviewer@省总工会" in who.output
    tokens = ok(["token", "list"], env={"COLUMNS": "200"})
    assert "cli on" in tokens.output

    again = login("editor")  # a second login replaces the token: the first one stops working
    assert again.exit_code == 0, again.output
    one_line_error(runner.invoke(app, ["whoami"], env={"MATRIX_TOKEN": token}), "this token was revoked")

    second = token_file.read_text().strip()
    out = ok(["logout"])
    assert "signed out (editor)" in out.output and not token_file.exists()
    one_line_error(runner.invoke(app, ["whoami"]), "not signed in: run `matrix login`")
    one_line_error(runner.invoke(app, ["whoami"], env={"MATRIX_TOKEN": second}), "this token was revoked")


def test_the_password_prompt_is_hidden(people: Path) -> None:
    result = runner.invoke(app, ["login"], input=f"reviewer\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output and "signed in as reviewer" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["whoami"],
        ["post", "list"],
        ["post", "show", "1"],
        ["post", "approve", "1"],
        ["post", "create", "-t", "标题", "--body", "正文", "-a", "site-a"],
        ["account", "list"],
        ["account", "add", "manual", "手工", "--credentials", "{}"],
        ["notifications"],
        ["terms", "add", PROVINCE, "蓝鲸"],
        ["user", "list"],
        ["user", "passwd"],
        ["token", "list"],
        ["token", "create", "ci"],
        ["org", "chain", "show", PROVINCE],
        ["audit", "verify"],
        ["audit", "list"],
        ["delivery", "removed", "1"],
        ["post", "retract", "1"],
        ["secrets", "rotate"],
    ],
)
def test_a_command_without_sign_in_fails_with_one_line(people: Path, args: list[str]) -> None:
    one_line_error(runner.invoke(app, args), "not signed in: run `matrix login`")


def test_a_token_that_does_not_hold_is_one_line(people: Path) -> None:
    one_line_error(runner.invoke(app, ["post", "list"], env={"MATRIX_TOKEN": "mm_nonsense"}), "unknown token")
    one_line_error(runner.invoke(app, ["post", "list"], env={"MATRIX_TOKEN": "hunter2"}), "not a media-matrix token")


def test_wrong_password_and_lock_out(people: Path) -> None:
    one_line_error(login("editor", "not the password"), "wrong user name or password")
    one_line_error(login("nobody", "not the password"), "wrong user name or password")  # names cannot be probed
    for _ in range(3):
        one_line_error(login("editor", "not the password"), "wrong user name or password")
    fifth = one_line_error(login("editor", "not the password"), "too many failed sign-ins: try again after")
    assert re.search(r"after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", fifth), fifth
    one_line_error(login("editor"), "too many failed sign-ins")  # even the right password, until then
    assert not (people / "token").exists()
    signed_in("reviewer")  # others are not locked out


# ------------------------------------------------------------------------------------------ users


def test_user_add_bootstraps_then_needs_an_admin(home: Path) -> None:
    one_line_error(runner.invoke(app, ["user", "add", "root", "--role", "editor@总部"]), "first user must be an admin")
    first = ok(["user", "add", "root", "--role", "admin@总部"])  # no sign-in: nobody exists yet
    assert "user 1 added: root (admin@总部)" in first.output and "shown once" in first.output
    password = re.search(r"password: (\S+)", first.output).group(1)

    one_line_error(runner.invoke(app, ["user", "add", "ann", "--role", "editor@总部"]), "not signed in")
    signed_in_root = login("root", password)
    assert signed_in_root.exit_code == 0, signed_in_root.output
    added = ok(["user", "add", "ann", "--role", "editor@总部", "--password-stdin"], input=PASSWORD + "\n")
    assert "user 2 added: ann (editor@总部)" in added.output and "password:" not in added.output
    one_line_error(runner.invoke(app, ["user", "add", "bob", "--role", "editor@无此单位"]), "'无此单位' not found")
    one_line_error(runner.invoke(app, ["user", "add", "bob", "--role", "editor"]), "ROLE@ORG")
    listed = ok(["user", "list"], env={"COLUMNS": "200"})
    assert "root" in listed.output and "ann" in listed.output and "editor@总部" in listed.output
    signed_in_ann = login("ann")
    assert signed_in_ann.exit_code == 0, signed_in_ann.output


def test_a_non_admin_cannot_manage_users(people: Path) -> None:
    signed_in("editor")
    one_line_error(runner.invoke(app, ["user", "add", "x", "--role", "editor@省总工会"]), "may not manage users")
    one_line_error(runner.invoke(app, ["user", "list"]), "may not manage users")
    one_line_error(runner.invoke(app, ["user", "disable", "reviewer"]), "may not manage users")
    one_line_error(runner.invoke(app, ["user", "grant", "reviewer", "admin@省总工会"]), "may not manage users")
    one_line_error(runner.invoke(app, ["secrets", "rotate"]), "may not manage users")


def test_passwd_grant_and_disable(people: Path) -> None:
    signed_in("editor")
    new = "another long password"
    ok(["user", "passwd"], input=f"{new}\n{new}\n")  # yourself; asked twice, hidden
    one_line_error(login("editor"), "wrong user name or password")
    signed_in_again = login("editor", new)
    assert signed_in_again.exit_code == 0, signed_in_again.output
    one_line_error(runner.invoke(app, ["user", "passwd", "--password-stdin"], input="short\n"), "at least 10")

    signed_in("admin")
    ok(["user", "grant", "monitor", f"editor@{CITY}"])
    ok(["user", "passwd", "monitor", "--password-stdin"], input=new + "\n")
    signed_in_monitor = login("monitor", new)
    assert "editor@市总工会" in signed_in_monitor.output, signed_in_monitor.output
    monitor_token = (people / "token").read_text().strip()
    signed_in("admin")
    ok(["user", "disable", "monitor"])
    one_line_error(login("monitor", new), "wrong user name or password")
    one_line_error(runner.invoke(app, ["whoami"], env={"MATRIX_TOKEN": monitor_token}), "revoked")


# ------------------------------------------------------------------------------------------ tokens


def test_token_create_list_revoke(people: Path) -> None:
    signed_in("monitor")
    created = ok(["token", "create", "nightly report"])
    assert "token" in created.output and "shown once" in created.output
    secret = re.search(r"(mm_\S+)", created.output).group(1)
    token_id = int(re.search(r"token (\d+) created", created.output).group(1))
    listed = ok(["token", "list"], env={"COLUMNS": "200"})
    assert "nightly report" in listed.output and secret not in listed.output

    who = ok(["whoami"], env={"MATRIX_TOKEN": secret})  # MATRIX_TOKEN comes before the stored token
    assert who.output.startswith("monitor")
    ok(["token", "revoke", str(token_id)])
    one_line_error(runner.invoke(app, ["whoami"], env={"MATRIX_TOKEN": secret}), "this token was revoked")
    one_line_error(runner.invoke(app, ["token", "revoke", str(token_id)]), f"token {token_id} not found")
    signed_in("editor")
    one_line_error(runner.invoke(app, ["token", "revoke", "1"]), "may not manage users")  # someone else's


# ------------------------------------------------------------------------------------------ audit


def test_audit_verify_catches_a_row_changed_in_the_database(people: Path) -> None:
    signed_in("monitor")
    one_line_error(runner.invoke(app, ["audit", "verify"]), "may not read the audit log")
    signed_in("admin")
    intact = ok(["audit", "verify"])
    assert re.search(r"audit log intact: \d+ rows", intact.output), intact.output
    listed = ok(["audit", "list", "--user", "admin", "--action", "token.issue"], env={"COLUMNS": "250"})
    assert "token.issue" in listed.output and "user.create" not in listed.output
    by_object = ok(["audit", "list", "--object", "user:2", "--limit", "5"], env={"COLUMNS": "250"})
    assert "user.create" in by_object.output
    one_line_error(runner.invoke(app, ["audit", "list", "--object", "user:x"]), "TYPE:ID")
    one_line_error(runner.invoke(app, ["audit", "list", "--since", "someday"]), "cannot read time")

    with session_scope() as s:  # someone with the table owner's rights edits history
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events"))
        else:
            s.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        s.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE id = 2"))
    broken = runner.invoke(app, ["audit", "verify"])
    one_line_error(broken, "audit row 2 was changed after it was written", code=1)


# ------------------------------------------------------------------------------------- reviewing


def _post_by(name: str, title: str = "工会开会", body: str = "今天下午三点，工会召开全体会员大会。") -> int:
    signed_in(name)
    created = ok(["post", "create", "-t", title, "--body", body, "-a", "site-a"])
    post_id = int(re.search(r"post (\d+) created", created.output).group(1))
    with session_scope() as s:
        version_id = services.get(s, Post, post_id).current_version_id
    with session_scope() as s:
        services.screen_version(s, version_id)
    return post_id


@pytest.fixture()
def always_reviewed(people: Path) -> None:
    """The province's chain: 初审 by a reviewer of the post's organisation, 终审 by a reviewer of the root, always."""
    chain = {
        "applies": "always",
        "steps": [
            {"name": "初审", "role": "reviewer", "at": "own"},
            {"name": "终审", "role": "reviewer", "at": "root"},
        ],
    }
    path = people.parent / "chain.json"
    path.write_text(json.dumps(chain, ensure_ascii=False), encoding="utf-8")
    signed_in("editor")
    one_line_error(runner.invoke(app, ["org", "chain", "set", PROVINCE, "--file", str(path)]), "may not change")
    signed_in("admin")
    ok(["org", "chain", "set", PROVINCE, "--file", str(path)])


def test_org_chain_show_and_set(always_reviewed, people: Path) -> None:
    shown = ok(["org", "chain", "show", CITY], env={"COLUMNS": "200"})
    assert "review chain of 市总工会 (inherited from 省总工会)" in shown.output
    assert "1. 初审: a reviewer of the post's organisation or above" in shown.output
    assert "applies to every post" in shown.output
    bad = people.parent / "bad.json"
    bad.write_text('{"steps": []}', encoding="utf-8")
    one_line_error(runner.invoke(app, ["org", "chain", "set", PROVINCE, "--file", str(bad)]), "1 to 5 steps")
    bad.write_text("{nope", encoding="utf-8")
    one_line_error(runner.invoke(app, ["org", "chain", "set", PROVINCE, "--file", str(bad)]), "not valid JSON")
    one_line_error(runner.invoke(app, ["org", "chain", "set", PROVINCE]), "--file CHAIN.json or --clear")
    ok(["org", "chain", "set", PROVINCE, "--clear"])
    default = ok(["org", "chain", "show", PROVINCE], env={"COLUMNS": "200"})
    assert "the default" in default.output


def test_post_approve_of_ones_own_post_is_refused_and_the_chain_moves_on(always_reviewed) -> None:
    post_id = _post_by("editor")  # the editor is a reviewer too
    shown = ok(["post", "show", str(post_id)], env={"COLUMNS": "200"})
    assert "needs_review" in shown.output and "review: 初审 → 终审 (applies to every post)" in shown.output
    assert "1. 初审 (reviewer of 省总工会 or above): next" in shown.output
    one_line_error(runner.invoke(app, ["post", "approve", str(post_id)]), "nobody approves their own post")

    signed_in("reviewer")
    step = ok(["post", "approve", str(post_id)])
    assert "next: 终审" in step.output
    one_line_error(runner.invoke(app, ["post", "approve", str(post_id)]), "approved a step", "another person")
    signed_in("reviewer2")
    final = ok(["post", "approve", str(post_id)])
    assert f"post {post_id} approved" in final.output
    shown = ok(["post", "show", str(post_id), "--json"])
    progress = json.loads(shown.output)["review"]
    assert [s["approved_by"] for s in progress["steps"]] == ["reviewer", "reviewer2"]

    signed_in("monitor")
    one_line_error(runner.invoke(app, ["post", "reject", str(post_id), "--reason", "no"]), "may not review posts")


def test_post_override_of_an_automatic_reject(people: Path) -> None:
    post_id = _post_by("editor", title="通知", body="你个傻逼，草泥马")
    signed_in("reviewer")
    shown = ok(["post", "show", str(post_id)], env={"COLUMNS": "200"})
    assert "rejected" in shown.output
    one_line_error(runner.invoke(app, ["post", "override", str(post_id), "--reason", " "]), "needs a reason")
    done = ok(["post", "override", str(post_id), "--reason", "quoting a complaint"])
    assert f"post {post_id} overridden (approved)" in done.output  # the default chain has one step
    one_line_error(runner.invoke(app, ["post", "override", str(post_id), "--reason", "again"]), "not rejected")


def test_notifications_are_the_signed_in_users_own(people: Path) -> None:
    post_id = _post_by("editor", body="报名请致电王老师 13800138000，谢谢。")
    signed_in("reviewer")
    ok(["post", "reject", str(post_id), "--reason", "不要公开电话号码"])
    mine = ok(["notifications"], env={"COLUMNS": "200"})
    assert "notifications for reviewer" in mine.output and "不要公开电话号码" not in mine.output
    signed_in("editor")
    theirs = ok(["notifications"], env={"COLUMNS": "200"})
    assert "notifications for editor" in theirs.output and "不要公开电话号码" in theirs.output
    assert "不要公开电话号码" not in ok(["notifications"], env={"COLUMNS": "200"}).output  # marked read


# ------------------------------------------------------------------------------------------- demo


def test_demo_seed_shows_the_demo_passwords_once_then_takes_an_admin(home: Path, monkeypatch) -> None:
    from publisher.interfaces import cli

    specs = [{"kind": "manual", "name": "手工发布", "credentials": {}, "config": {}}]
    monkeypatch.setattr(cli, "fetch_demo_accounts", lambda _url: specs)  # no sandboxes run here
    first = ok(["demo", "seed", "--post"], env={"COLUMNS": "200"})
    assert "demo users (passwords shown once)" in first.output and "matrix login --user editor" in first.output
    passwords = dict(re.findall(r"│ (\S+)\s+│ \S+@\S+\s+│ (\S+)\s+│", first.output))
    assert set(passwords) == {"admin", "editor", "reviewer", "monitor", "city-editor", "city-reviewer"}

    one_line_error(runner.invoke(app, ["demo", "seed"]), "not signed in")
    signed_in_editor = login("editor", passwords["editor"])
    assert signed_in_editor.exit_code == 0, signed_in_editor.output
    assert "网上职工之家正式上线" in ok(["post", "list"], env={"COLUMNS": "200"}).output  # the editor's demo post
    one_line_error(runner.invoke(app, ["demo", "seed"]), "may not manage users")
    assert login("admin", passwords["admin"]).exit_code == 0
    again = ok(["demo", "seed"])
    assert "demo data ready: 1 sandbox accounts" in again.output and "passwords" not in again.output
