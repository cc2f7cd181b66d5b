"""``matrix monitor …``: the public-opinion monitor's sources, rules and polls, as the signed-in person.

Wired into :mod:`publisher.interfaces.cli` by one ``add_typer`` line; signing in and errors (one line, exit 2)
work as the main CLI's (:mod:`publisher.interfaces.cli_common`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from core.db import session_scope
from core.errors import InvalidInput
from monitor import alert_channels, report, report_schedule, services
from publisher.interfaces.cli_common import _principal, console, user_errors

app = typer.Typer(help="The public-opinion monitor (舆情监测): feed sources, rules, polls.", no_args_is_help=True)
source_app = typer.Typer(help="Feed sources (RSS, Atom, JSON Feed; RSSHub routes).", no_args_is_help=True)
rules_app = typer.Typer(help='Keyword rules: AND / OR / NOT, "phrases", NEAR/N.', no_args_is_help=True)
app.add_typer(source_app, name="source")
app.add_typer(rules_app, name="rules")
alerts_app = typer.Typer(help="Alerts: the log, and the channels they go to.", no_args_is_help=True)
channel_app = typer.Typer(help="Alert channels: WeCom, DingTalk, Feishu robots and e-mail.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
alerts_app.add_typer(channel_app, name="channel")
report_app = typer.Typer(
    help="The daily report (舆情日报): shown, written as HTML / PDF, or sent at a set time.",
    invoke_without_command=True,
)
schedule_app = typer.Typer(help="When an organisation's daily report is sent, and where.", no_args_is_help=True)
app.add_typer(report_app, name="report")
report_app.add_typer(schedule_app, name="schedule")


@source_app.command("add")
def source_add(
    url: str = typer.Argument(None, help="The feed's URL (not with --comments)."),
    comments: bool = typer.Option(False, "--comments", help="The comments on our own published posts instead."),
    account: int = typer.Option(None, "--account", help="With --comments: only this account's posts."),
    name: str = typer.Option("", "--name", help="Default: the URL's host (comments: the account's or org's name)."),
    org: str = typer.Option(None, "--org", help="Owner organisation (name or id); default: your only one."),
    interval: int = typer.Option(None, "--interval", help="Seconds between polls (default 3600; comments 900)."),
    tag: list[str] = typer.Option([], "--tag", help="A tag; repeat for several."),
) -> None:
    """Add a feed source, or (--comments) the comments on your organisation's posts; polled at once, then every
    interval."""
    with user_errors(), session_scope() as session:
        if comments and url:
            raise InvalidInput("a comments source takes no URL: --comments [--account ID] --org ORG")
        if not comments and (not url or account is not None):
            raise InvalidInput("give the feed's URL, or --comments [--account ID] for the comments on your posts")
        actor = _principal(session)
        if comments:
            source = services.add_comments_source(
                session, actor, organization=org, account=account, name=name, interval_s=interval, tags=tag
            )
        else:
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
    table = Table("id", "kind", "name", "organisation", "state", "interval", "failures", "fetches", "parses",
                  "last error")  # fmt: skip
    for r in rows:
        kind = r["kind"] + (f" ({r['account']['kind']} {r['account']['id']})" if r["account"] else "")
        table.add_row(str(r["id"]), kind, r["name"], r["organization"] or "", r["state"], str(r["interval_s"]),
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


@channel_app.command("add")
def channel_add(
    kind: str = typer.Argument(..., help="wecom | dingtalk | feishu | email"),
    name: str = typer.Argument(...),
    org: str = typer.Option(None, "--org", help="Owner organisation; default: your only one."),
    webhook: str = typer.Option("", "--webhook", help="The robot's webhook URL (kept encrypted)."),
    secret: bool = typer.Option(False, "--secret", help="Ask for the DingTalk / Feishu signing secret."),
    keyword: str = typer.Option("", "--keyword", help="The robot's keyword (DingTalk, Feishu), put in every message."),
    rule: list[int] = typer.Option([], "--rule", help="Only these rules (repeat); default: the organisation's."),
    quiet: str = typer.Option("", "--quiet", help="Quiet hours, local, e.g. 22:00-07:30: alerts held, sent after."),
    smtp_host: str = typer.Option("", "--smtp-host"),
    smtp_port: int = typer.Option(None, "--smtp-port"),
    smtp_security: str = typer.Option("starttls", "--smtp-security", help="starttls | ssl | none"),
    smtp_user: str = typer.Option("", "--smtp-user", help="Asks for the password when given."),
    mail_from: str = typer.Option("", "--from"),
    mail_to: list[str] = typer.Option([], "--to", help="A recipient (repeat)."),
) -> None:
    """Add an alert channel. Secrets are asked for (not taken on the command line, where shells keep them)."""
    signing = typer.prompt("signing secret", hide_input=True) if secret else ""
    password = typer.prompt("SMTP password", hide_input=True) if smtp_user else ""
    start, _, end = quiet.partition("-")
    with user_errors(), session_scope() as session:
        channel = alert_channels.add_channel(
            session, _principal(session), kind=kind, name=name, organization=org, webhook=webhook, secret=signing,
            keyword=keyword, rules=rule, quiet_start=start or None, quiet_end=end or None, smtp_host=smtp_host,
            smtp_port=smtp_port, smtp_security=smtp_security, smtp_username=smtp_user, smtp_password=password,
            mail_from=mail_from, mail_to=mail_to,
        )  # fmt: skip
        session.flush()
        console.print(f"alert channel {channel.id} added: {channel.name} ({channel.kind})")


@channel_app.command("list")
def channel_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the alert channels you may see (where they go, never their secrets)."""
    with user_errors(), session_scope() as session:
        rows = alert_channels.channel_rows(session, _principal(session))
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("id", "name", "kind", "organisation", "to", "keyword", "quiet", "state")
    for r in rows:
        state = r["state"] + (f": {r['state_reason']}" if r["state_reason"] else "")
        table.add_row(str(r["id"]), r["name"], r["kind"], r["organization"] or "", r["target"], r["keyword"],
                      r["quiet_hours"] or "", state)  # fmt: skip
    console.print(table)


@channel_app.command("remove")
def channel_remove(channel_id: int) -> None:
    """Remove an alert channel (its secrets erased; its sends stay in the log)."""
    with user_errors(), session_scope() as session:
        alert_channels.remove_channel(session, _principal(session), channel_id)
    console.print(f"alert channel {channel_id} removed")


@alerts_app.command("list")
def alerts_list(
    rule: int = typer.Option(None, "--rule"),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The alert log, newest first, with each channel's send state."""
    with user_errors(), session_scope() as session:
        rows = alert_channels.alert_rows(session, _principal(session), rule_id=rule, limit=limit)
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("id", "rule", "item", "created", "sends")
    for r in rows:
        sends = "; ".join(
            f"{s['channel']}: {s['state']} {s['parts_sent']}/{s['parts_total']}"
            + (f" ({s['last_error']})" if s["last_error"] and s["state"] != "sent" else "")
            for s in r["sends"]
        )
        table.add_row(str(r["id"]), r["rule"]["name"], r["item"]["title"], r["created_at"] or "", sends or "-")
    console.print(table)


@alerts_app.command("bursts")
def alerts_bursts(limit: int = typer.Option(50, "--limit"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Bursts, newest first: what rose, against which baseline, and the words that rose."""
    with user_errors(), session_scope() as session:
        rows = alert_channels.burst_rows(session, _principal(session), limit=limit)
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("id", "hour", "what", "count", "baseline", "z", "terms")
    for r in rows:
        table.add_row(str(r["id"]), r["hour_start"] or "", r["key"], str(r["count"]), f"{r['baseline']:.1f}",
                      f"{r['zscore']:.1f}", "、".join(r["terms"]))  # fmt: skip
    console.print(table)


@report_app.callback()
def report_show(
    ctx: typer.Context,
    org: str = typer.Option(None, "--org", help="Organisation (name or id), with its subtree; default: your only one."),
    day: str = typer.Option(None, "--day", help="YYYY-MM-DD, local; default: today."),
    html: Path = typer.Option(None, "--html", help="Write the HTML page to this file."),
    pdf: Path = typer.Option(None, "--pdf", help="Write the PDF to this file (needs a CJK font)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The daily report of an organisation: a summary table, or the page written as HTML and / or PDF."""
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        when = report.parse_day(day)
        with session_scope() as session:
            data = report.daily_report(session, _principal(session), organization=org, day=when)
        # rendered before any file is written: no font means no PDF and no half-done set of files
        pages = {html: report.render_html(data).encode()} if html else {}
        if pdf:
            pages[pdf] = report.render_pdf(data)
        for path, content in pages.items():
            try:
                path.write_bytes(content)
            except OSError as exc:
                raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None
            console.print(f"wrote {path} ({len(content):,} bytes)")
    if pages:
        return
    if as_json:
        console.print_json(json.dumps(data, ensure_ascii=False))
        return
    vol, neg = data["volume"], data["negativity"]
    table = Table("", "day", "7 days before", title=f"舆情日报 {data['organization']['name']} {data['day']}")
    before = neg["before"]
    table.add_row("items", str(vol["items"]), str(before["items"]))
    table.add_row("stories / sources", f"{vol['stories']} / {vol['sources']}", "")
    table.add_row("negative share", f"{neg['share']:.1%}", f"{before['share']:.1%}")
    table.add_row("negativity mean", f"{neg['mean']:.3f}", f"{before['mean']:.3f}")
    for n in data["needs"]:
        table.add_row(n["label"], str(n["count"]), f"{n['before_mean']}/day" + (" ↑" if n["rising"] else ""))
    table.add_row("alerts / bursts", f"{len(data['alerts']['rows'])} / {len(data['bursts']['rows'])}", "")
    console.print(table)
    stories = Table("#", "story", "sources", "items", title="top stories")
    for i, s in enumerate(data["top_stories"], 1):
        stories.add_row(str(i), s["title"], str(s["sources"]), str(s["items"]))
    console.print(stories)


@schedule_app.command("set")
def schedule_set(
    at: str = typer.Argument(..., help="Local time of day, HH:MM."),
    org: str = typer.Option(None, "--org", help="Organisation; default: your only one."),
    channel: list[int] = typer.Option([], "--channel", help="An alert channel id (repeat): robot or e-mail."),
    email: list[str] = typer.Option([], "--email", help="An address (repeat), via the schedule's e-mail channel."),
    covers: str = typer.Option("yesterday", "--covers", help="yesterday | today"),
    disable: bool = typer.Option(False, "--disable", help="Keep the schedule but send nothing."),
) -> None:
    """Send the organisation's daily report every day at AT (replaces its schedule)."""
    with user_errors(), session_scope() as session:
        schedule = report_schedule.set_schedule(
            session, _principal(session), at=at, organization=org, covers=covers, channels=channel, emails=email,
            enabled=not disable,
        )  # fmt: skip
        console.print(f"report schedule {schedule.id}: {schedule.at} daily, {schedule.covers}")


@schedule_app.command("list")
def schedule_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """The report schedules you may see, with their last sends."""
    with user_errors(), session_scope() as session:
        rows = report_schedule.schedule_rows(session, _principal(session))
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("id", "organisation", "at", "covers", "channels", "e-mails", "enabled", "last sends")
    for r in rows:
        sends = "; ".join(f"{s['day']} {s['target']}: {s['state']}" for s in r["sends"][:3])
        table.add_row(str(r["id"]), r["organization"], r["at"], r["covers"], ", ".join(map(str, r["channels"])),
                      ", ".join(r["emails"]), "yes" if r["enabled"] else "no", sends or "-")  # fmt: skip
    console.print(table)
