"""Organisation aliases (issue 13): who may add and remove them, what is refused and why, the audit trail, and the
same through the CLI (one-line errors) and the API (4xx with the reason)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from core.audit import verify
from core.db import session_scope
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from publisher import services
from publisher.domain.models import AuditEvent, Organization, OrganizationAlias
from publisher.interfaces.api import app
from publisher.interfaces.cli import app as cli
from publisher.services.organizations import ALIASES_PER_ORG_MAX, add_alias, alias_rows, remove_alias
from tests.support.people import CITY, DISTRICT, NEIGHBOUR, PROVINCE, Person, make_user, password_of
from tests.support.stack import migrated_pg_installation

runner = CliRunner()


@pytest.fixture()
def people(env: Path, rules_only: None) -> dict[str, Person]:
    """A province admin, a city admin, a city editor and a province monitor, on the test tree."""
    return {
        "admin": make_user("admin", ("admin", PROVINCE)),
        "city_admin": make_user("city_admin", ("admin", CITY)),
        "editor": make_user("editor", ("editor", CITY)),
        "monitor": make_user("monitor", ("monitor", PROVINCE)),
    }


def _org_id(name: str) -> int:
    with session_scope() as s:
        org_id = s.scalar(select(Organization.id).where(Organization.name == name))
        assert org_id is not None
        return org_id


def _add(person: Person, org: int | str, alias: str) -> dict[str, Any]:
    with session_scope() as s:
        return add_alias(s, person.principal, org, alias)


def _aliases(org: str) -> list[str]:
    with session_scope() as s:
        return [a.alias for a in s.scalars(select(OrganizationAlias).where(
            OrganizationAlias.organization_id == _org_id(org)).order_by(OrganizationAlias.alias))]  # fmt: skip


# ------------------------------------------------------------------------------------------ services


def test_admins_of_the_organisation_or_above_may_change_its_aliases(people: dict[str, Person]) -> None:
    assert _add(people["admin"], PROVINCE, "江苏总工会")["aliases"] == ["江苏总工会"]
    assert _add(people["admin"], CITY, "南京市总")["organization"] == CITY  # the province admin, below it
    _add(people["city_admin"], DISTRICT, "玄武区总")  # the city admin, on the district below the city
    _add(people["city_admin"], _org_id(CITY), "南京总工会")  # by id as well as by name
    with pytest.raises(Forbidden, match=r"city_admin .*may not change .* in 省总工会: that takes admin"):
        _add(people["city_admin"], PROVINCE, "省总")
    with pytest.raises(Forbidden, match="in 邻市总工会"):
        _add(people["city_admin"], NEIGHBOUR, "邻市总")
    for who in ("editor", "monitor"):
        with pytest.raises(Forbidden, match="that takes admin"):
            _add(people[who], CITY, "市总")
        with session_scope() as s, pytest.raises(Forbidden, match="that takes admin"):
            remove_alias(s, people[who].principal, CITY, "南京市总")
    assert _aliases(CITY) == ["南京市总", "南京总工会"] and _aliases(PROVINCE) == ["江苏总工会"]


@pytest.mark.parametrize(
    ("alias", "error", "reason"),
    [
        ("", InvalidInput, "empty alias"),
        ("   ", InvalidInput, "empty alias"),
        ("总" * 201, InvalidInput, "alias is 201 characters; at most 200"),
        ("总", InvalidInput, "too short to match: at least 2 characters"),
        (" Ｚ ", InvalidInput, "too short"),  # one character once normalised (full width folded)
        ("市总工会", Conflict, "is the name of organisation 市总工会"),
        ("省总工会", Conflict, "is its own name"),
        ("江苏总工会", Conflict, "is already an alias of 省总工会"),
        ("江蘇總工會", Conflict, "already an alias of 省总工会 (as '江苏总工会')"),  # the same once normalised
        ("江苏 总工会", Conflict, "already an alias of 省总工会"),
        ("南京市总", Conflict, "already an alias of 市总工会"),  # another organisation's alias
    ],
)
def test_bad_aliases_are_refused_with_the_reason(
    people: dict[str, Person], alias: str, error: type[Exception], reason: str
) -> None:
    _add(people["admin"], PROVINCE, "江苏总工会")
    _add(people["admin"], CITY, "南京市总")
    with pytest.raises(error, match=reason.replace("(", r"\(").replace(")", r"\)")):
        _add(people["admin"], PROVINCE, alias)
    assert _aliases(PROVINCE) == ["江苏总工会"]


def test_surrounding_blanks_are_dropped_and_an_organisation_has_a_bounded_number(people: dict[str, Person]) -> None:
    assert _add(people["admin"], CITY, "  南京市总\t")["aliases"] == ["南京市总"]
    for n in range(1, ALIASES_PER_ORG_MAX):
        _add(people["admin"], CITY, f"南京{n:02d}号")
    with pytest.raises(InvalidInput, match=f"has {ALIASES_PER_ORG_MAX} aliases, the most it may have"):
        _add(people["admin"], CITY, "一个太多")


def test_removing_by_any_spelling_and_an_unknown_alias_is_not_found(people: dict[str, Person]) -> None:
    _add(people["admin"], PROVINCE, "江苏总工会")
    with session_scope() as s, pytest.raises(NotFound, match="省总工会 has no alias '省总'"):
        remove_alias(s, people["admin"].principal, PROVINCE, " 省总 ")
    with session_scope() as s:
        assert remove_alias(s, people["admin"].principal, PROVINCE, "江蘇總工會")["aliases"] == []
    assert _aliases(PROVINCE) == []
    _add(people["admin"], CITY, "江苏总工会")  # free again: another organisation may take it now


def test_adds_and_removes_are_audited_and_refusals_are_not(people: dict[str, Person]) -> None:
    _add(people["city_admin"], CITY, "南京市总")
    with pytest.raises(Conflict):
        _add(people["city_admin"], CITY, "南京市总")
    with session_scope() as s:
        remove_alias(s, people["city_admin"].principal, CITY, "南京市总")
    with session_scope() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action.like("org.alias%")).order_by(AuditEvent.id))
        rows = [(e.action, e.actor, e.actor_id, e.object_type, e.object_id, e.detail) for e in events]
        assert verify(s).ok
    city, actor_id = _org_id(CITY), people["city_admin"].principal.user_id
    assert rows == [
        ("org.alias_add", "city_admin", actor_id, "organization", city, {"alias": "南京市总"}),
        ("org.alias_remove", "city_admin", actor_id, "organization", city, {"alias": "南京市总"}),
    ]


def test_a_new_organisation_cannot_be_named_as_an_alias(people: dict[str, Person]) -> None:
    _add(people["admin"], PROVINCE, "江苏总工会")
    with session_scope() as s, pytest.raises(Conflict, match="organisation name '江蘇總工會' is already an alias"):
        services.ensure_organization(s, "江蘇總工會")
    with session_scope() as s:  # an existing organisation is still found by its name
        assert services.ensure_organization(s, CITY).name == CITY


def test_lists_show_the_actors_part_of_the_tree(people: dict[str, Person]) -> None:
    _add(people["admin"], PROVINCE, "江苏总工会")
    _add(people["admin"], DISTRICT, "玄武区总")
    with session_scope() as s:
        mine = alias_rows(s, people["city_admin"].principal)
        everything = alias_rows(s, people["monitor"].principal)
        one = alias_rows(s, people["editor"].principal, DISTRICT)
        with pytest.raises(Forbidden, match="may not see posts in 省总工会"):
            alias_rows(s, people["editor"].principal, PROVINCE)
        with pytest.raises(NotFound, match="organisation '无此单位' not found"):
            alias_rows(s, people["editor"].principal, "无此单位")
    assert [(r["organization"], r["aliases"]) for r in mine] == [(DISTRICT, ["玄武区总"]), (CITY, [])]
    assert {r["organization"] for r in everything} == {PROVINCE, CITY, DISTRICT, NEIGHBOUR}
    assert one == [{"organization_id": _org_id(DISTRICT), "organization": DISTRICT, "aliases": ["玄武区总"]}]


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture()
def signed_in(people: dict[str, Person], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's config folder in ``tmp_path`` and no MATRIX_TOKEN; sign in with :func:`_login`."""
    monkeypatch.setenv("MATRIX_CLI_CONFIG_DIR", str(tmp_path / "cli-config"))
    monkeypatch.delenv("MATRIX_TOKEN", raising=False)


def _login(name: str) -> None:
    done = runner.invoke(cli, ["login", "--user", name, "--password-stdin"], input=password_of(name) + "\n")
    assert done.exit_code == 0, done.output


def _run(*args: str, code: int = 0) -> str:
    done = runner.invoke(cli, ["org", "alias", *args], env={"COLUMNS": "200"})
    assert done.exit_code == code, done.output
    return done.output


def _one_line_error(*args: str) -> str:
    lines = [line for line in _run(*args, code=2).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    return lines[0]


def test_the_cli_adds_lists_and_removes_aliases(signed_in: None) -> None:
    _login("admin")
    assert _run("add", PROVINCE, "江苏总工会").strip() == "省总工会: 江苏总工会"
    assert _run("add", PROVINCE, "省总").strip() == "省总工会: 江苏总工会、省总"
    assert "市总工会: no alias" in _run("list")
    assert _run("list", PROVINCE).strip() == "省总工会: 江苏总工会、省总"
    assert '"aliases": [\n      "江苏总工会",' in _run("list", PROVINCE, "--json")
    assert _run("remove", str(_org_id(PROVINCE)), "省总").strip() == "省总工会: 江苏总工会"
    assert _aliases(PROVINCE) == ["江苏总工会"]


def test_the_cli_says_what_is_wrong_in_one_line(signed_in: None) -> None:
    _login("admin")
    _run("add", PROVINCE, "江苏总工会")
    assert "is already an alias of 省总工会" in _one_line_error("add", CITY, "江苏总工会")
    assert "is the name of organisation 市总工会" in _one_line_error("add", PROVINCE, "市总工会")
    assert "empty alias" in _one_line_error("add", PROVINCE, " ")
    assert "at most 200" in _one_line_error("add", PROVINCE, "总" * 201)
    assert "organisation '无此单位' not found" in _one_line_error("add", "无此单位", "某某")
    assert "省总工会 has no alias '省总'" in _one_line_error("remove", PROVINCE, "省总")
    _login("editor")
    assert "may not change moderation lists" in _one_line_error("add", CITY, "南京市总")
    assert "may not see posts in 省总工会" in _one_line_error("list", PROVINCE)


# ------------------------------------------------------------------------------------------ the API


@pytest.fixture()
def client(people: dict[str, Person]) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _detail(response: Any, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert "\n" not in response.text.strip() and "Traceback" not in response.text, response.text[:300]
    return response.json()["detail"]


def test_the_api_adds_lists_and_removes_aliases(client: TestClient, people: dict[str, Person]) -> None:
    admin, province = people["admin"].headers, _org_id(PROVINCE)
    added = client.post(f"/organizations/{province}/aliases", json={"alias": "江苏总工会"}, headers=admin)
    assert added.status_code == 201, added.text
    assert added.json() == {"organization_id": province, "organization": PROVINCE, "aliases": ["江苏总工会"]}
    client.post(f"/organizations/{province}/aliases", json={"alias": "省总/苏总"}, headers=admin).raise_for_status()
    shown = client.get(f"/organizations/{province}/aliases", headers=people["editor"].headers)
    assert _detail(shown, 403).startswith("editor (editor) may not see posts in 省总工会")
    shown = client.get(f"/organizations/{province}/aliases", headers=people["monitor"].headers)
    assert shown.json()["aliases"] == ["江苏总工会", "省总/苏总"]
    listed = client.get("/organization-aliases", headers=people["editor"].headers).json()
    assert [r["organization"] for r in listed] == [DISTRICT, CITY]  # the editor's part of the tree, by name
    removed = client.delete(f"/organizations/{province}/aliases", params={"alias": "省总/苏总"}, headers=admin)
    assert removed.status_code == 200 and removed.json()["aliases"] == ["江苏总工会"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"alias": "江苏总工会"}, 409, "alias '江苏总工会' is already an alias of 省总工会"),
        ({"alias": "邻市总工会"}, 409, "is the name of organisation 邻市总工会"),
        ({"alias": " "}, 422, "empty alias"),
        ({"alias": "总"}, 422, "too short to match"),
        ({"alias": "总" * 201}, 422, "alias: String should have at most 200 characters"),
        ({}, 422, "alias is required"),
        ({"alias": "省总", "organization": 1}, 422, "unknown field 'organization'"),
    ],
)
def test_the_api_refuses_bad_aliases_with_a_reason(
    client: TestClient, people: dict[str, Person], body: dict[str, Any], status: int, reason: str
) -> None:
    province = _org_id(PROVINCE)
    _add(people["admin"], PROVINCE, "江苏总工会")
    response = client.post(f"/organizations/{province}/aliases", json=body, headers=people["admin"].headers)
    assert reason in _detail(response, status)


def test_the_api_answers_403_and_404_with_a_reason(client: TestClient, people: dict[str, Person]) -> None:
    province = _org_id(PROVINCE)
    denied = client.post(f"/organizations/{province}/aliases", json={"alias": "省总"},
                         headers=people["city_admin"].headers)  # fmt: skip
    assert "may not change moderation lists, policies or review chains in 省总工会" in _detail(denied, 403)
    missing = client.delete(f"/organizations/{province}/aliases", params={"alias": "省总"},
                            headers=people["admin"].headers)  # fmt: skip
    assert _detail(missing, 404) == "省总工会 has no alias '省总'"
    assert _detail(client.get("/organizations/999/aliases", headers=people["admin"].headers), 404) == (
        "organisation 999 not found"
    )
    no_alias = client.delete(f"/organizations/{province}/aliases", headers=people["admin"].headers)
    assert _detail(no_alias, 422) == "alias is required"


# ------------------------------------------------------------------------------------------ PostgreSQL


@pytest.fixture()
def on_postgresql(env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``env`` moved onto a fresh PostgreSQL database, migrated (skipped where PostgreSQL is unreachable, unless
    the services are required)."""
    with migrated_pg_installation(monkeypatch):
        yield


@pytest.mark.services
def test_two_admins_adding_one_alias_at_once_store_it_once(on_postgresql: None, rules_only: None) -> None:
    """The organisation's row is locked while an alias is checked and stored: the second add waits for the first
    to commit and then sees it (without the lock, each would see no alias and both would be stored)."""
    admin = make_user("admin", ("admin", PROVINCE)).principal
    second: list[Exception | dict[str, Any]] = []

    def add_meanwhile() -> None:
        try:
            with session_scope() as s:
                second.append(add_alias(s, admin, PROVINCE, "江蘇總工會"))  # the same alias, once normalised
        except Exception as exc:  # handed to the test's thread to assert on
            second.append(exc)

    with session_scope() as s:
        add_alias(s, admin, PROVINCE, "江苏总工会")  # flushed, not committed: the row lock is held
        other = threading.Thread(target=add_meanwhile)
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive() and second == []  # waiting on the lock
    other.join(timeout=30)
    assert len(second) == 1 and isinstance(second[0], Conflict), second
    assert "already an alias of 省总工会 (as '江苏总工会')" in str(second[0])
    assert _aliases(PROVINCE) == ["江苏总工会"]
    with session_scope() as s:
        assert remove_alias(s, admin, PROVINCE, "江苏总工会")["aliases"] == []
        assert verify(s).ok
