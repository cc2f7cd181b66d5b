"""``matrix monitor …``: the public-opinion monitor's sources, rules and polls, as the signed-in person.

Wired into :mod:`publisher.interfaces.cli` by one ``add_typer`` line; signing in and errors (one line, exit 2)
work as the main CLI's (:mod:`publisher.interfaces.cli_common`).
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from core.db import session_scope
from monitor import services
from publisher.interfaces.cli_common import _principal, console, user_errors

app = typer.Typer(help="The public-opinion monitor (舆情监测): feed sources, rules, polls.", no_args_is_help=True)
source_app = typer.Typer(help="Feed sources (RSS, Atom, JSON Feed; RSSHub routes).", no_args_is_help=True)
rules_app = typer.Typer(help='Keyword rules: AND / OR / NOT, "phrases", NEAR/N.', no_args_is_help=True)
app.add_typer(source_app, name="source")
app.add_typer(rules_app, name="rules")


@source_app.command("add")
def source_add(
    url: str,
    name: str = typer.Option("", "--name", help="Default: the URL's host."),
    org: str = typer.Option(None, "--org", help="Owner organisation (name or id); default: your only one."),
    interval: int = typer.Option(None, "--interval", help="Seconds between polls (default 3600)."),
    tag: list[str] = typer.Option([], "--tag", help="A tag; repeat for several."),
) -> None:
    """Add a feed source (polled at once, then every interval)."""
    with user_errors(), session_scope() as session:
        actor = _principal(session)
        source = services.add_source(
            session, actor, url=url, name=name, organization=org, interval_s=interval, tags=tag
        )
        session.flush()
        console.print(f"source {source.id} added: {source.name}")


@source_app.command("list")
def source_list(tag: str = typer.Option(None, "--tag"), as_json: bool = typer.Option(False, "--json")) -> None:
    """List the sources you may see, with their health."""
    with user_errors(), session_scope() as session:
        rows = services.source_rows(session, _principal(session), tag=tag)
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("id", "name", "organisation", "state", "interval", "failures", "fetches", "parses", "last error")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], r["organization"] or "", r["state"], str(r["interval_s"]),
                      str(r["failures"]), str(r["fetches"]), str(r["parses"]), r["last_error"] or "")  # fmt: skip
    console.print(table)


@source_app.command("pause")
def source_pause(source_id: int) -> None:
    """Pause a source (no more polls until resumed)."""
    with user_errors(), session_scope() as session:
        services.set_source_state(session, _principal(session), source_id, paused=True)
    console.print(f"source {source_id} paused")


@source_app.command("resume")
def source_resume(source_id: int) -> None:
    """Resume a paused source (polled at once, its failures forgotten)."""
    with user_errors(), session_scope() as session:
        services.set_source_state(session, _principal(session), source_id, paused=False)
    console.print(f"source {source_id} resumed")


@rules_app.command("add")
def rules_add(
    name: str,
    query: str,
    org: str = typer.Option(None, "--org", help="Owner organisation; its subtree's sources are in scope."),
    source: list[int] = typer.Option([], "--source", help="Only these sources (repeat)."),
    tag: list[str] = typer.Option([], "--tag", help="Only sources with one of these tags (repeat)."),
) -> None:
    """Add a rule: e.g. '欠薪 OR "拖欠 工资"', '加班 NEAR/10 强制 -自愿'."""
    with user_errors(), session_scope() as session:
        rule = services.add_rule(
            session, _principal(session), name=name, query_text=query, organization=org, sources=source, tags=tag
        )
        session.flush()
        console.print(f"rule {rule.id} added: {rule.name}")


@rules_app.command("list")
def rules_list() -> None:
    """List the rules you may see, with their hits and alerts."""
    with user_errors(), session_scope() as session:
        rows = services.rule_rows(session, _principal(session))
    table = Table("id", "name", "organisation", "query", "scope", "hits", "alerts")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], r["organization"] or "", r["query"],
                      json.dumps(r["scope"], ensure_ascii=False), str(r["hits"]), str(r["alerts"]))  # fmt: skip
    console.print(table)


@app.command("poll")
def poll(source_id: list[int] = typer.Argument(None, help="Sources to poll; default: every active one.")) -> None:
    """Make sources due now; the monitor's workers poll them."""
    with user_errors(), session_scope() as session:
        ids = services.poll_now(session, _principal(session), source_id or None)
    console.print(f"{len(ids)} source(s) due now: {', '.join(map(str, ids)) or '-'}")
