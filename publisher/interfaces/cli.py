"""The ``matrix`` command line (Typer + Rich).

Errors a user can fix (unknown account, time in the past, empty body…) print one line and exit 2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.exc import DataError
from typer.core import TyperGroup

from core import logredact
from core.clock import format_local, parse_local
from core.crypto import check_secret_key, rotate
from core.db import session_scope
from core.errors import MatrixError
from core.settings import get_settings
from moderation.cli import screen_command
from moderation.types import ModerationError
from publisher import migrate, services
from publisher.delivery import assisted, retract
from publisher.domain.models import Account, Organization
from publisher.services.demo import fetch_demo_accounts, seed
from publisher.services.screening import configure_moderation


def _not_utf8(arg: str) -> bool:
    # On POSIX the arguments arrive as bytes; Python hands over the bytes that are not UTF-8 as lone surrogates
    # (U+DC80-U+DCFF, "surrogateescape"), which no database, file or terminal takes.
    return any("\udc80" <= ch <= "\udcff" for ch in arg)


class _CheckedArgs(TyperGroup):
    """The ``matrix`` group: every argument, of every command, must be UTF-8 text (one line and exit 2 if not)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for i, arg in enumerate(args):
            if _not_utf8(arg):
                shown = os.fsencode(arg)[:40]
                where = f"the value of {args[i - 1]}" if i and args[i - 1].startswith("-") else "an argument"
                fail(f"{where} is not valid UTF-8: {shown!r}")
        return super().parse_args(ctx, args)


app = typer.Typer(
    help="media-matrix: draft once, screen, review, publish to the whole matrix.",
    no_args_is_help=True,
    cls=_CheckedArgs,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
account_app = typer.Typer(help="Platform accounts.", no_args_is_help=True)
post_app = typer.Typer(help="Posts: create, schedule, review, retract.", no_args_is_help=True)
delivery_app = typer.Typer(help="Single deliveries (one post on one account).", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data for the sandboxes.", no_args_is_help=True)
terms_app = typer.Typer(help="An organisation's own moderation deny- and allow-lists.", no_args_is_help=True)
secrets_app = typer.Typer(help="The secret key that encrypts credentials at rest.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(account_app, name="account")
app.add_typer(post_app, name="post")
app.add_typer(delivery_app, name="delivery")
app.add_typer(demo_app, name="demo")
app.add_typer(terms_app, name="terms")
app.add_typer(secrets_app, name="secrets")

console = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    """Print one red line and exit 2."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the publisher's and the moderation engine's errors into one line + exit 2."""

    try:
        yield
    except (MatrixError, ModerationError) as exc:
        fail(str(exc))
    except DataError as exc:  # a value the database refuses (a NUL character on PostgreSQL): the input's fault
        fail(f"the database refused a value: {_first_line(str(exc.orig))}")


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "invalid value"


def _writable(path: Path) -> None:
    """One line and exit 2 unless a file can be written at ``path``: checked before any work is done."""
    folder = path.parent
    if path.is_dir():
        fail(f"cannot write {path}: it is a folder; give a file name")
    if not folder.is_dir():
        fail(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        fail(f"cannot write {path}: folder {folder} is not writable")


def _session():
    return session_scope()


def _local(iso: str | None) -> str:
    """A read model's ISO time as people read it here (``2026-12-01 09:00:00 CST``); empty for none."""
    return format_local(datetime.fromisoformat(iso)) if iso else ""


# ---------------------------------------------------------------------------------------- processes


@app.command()
def api(host: str = typer.Option(None), port: int = typer.Option(None)) -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    import uvicorn

    _require_secret_key()
    settings = get_settings()
    uvicorn.run(
        "publisher.interfaces.api:app", host=host or settings.api_host, port=port or settings.api_port, log_level="info"
    )


def _require_secret_key() -> None:
    """Refuse to start a service without a usable secret key: one line naming MATRIX_SECRET_KEY, exit 2."""
    with user_errors():
        check_secret_key(get_settings())


def _exec_module(module: str, *args: str) -> None:
    """Become ``python -m module args…``: the worker app and the sandboxes run as their own programs, so this
    interface imports neither (the import contracts forbid it)."""
    argv = [sys.executable, "-m", module, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and module, arguments as a list, no shell


@app.command()
def worker(concurrency: int = typer.Option(None, "--concurrency", "-c"), loglevel: str = "info") -> None:
    """Run a Celery worker (deliveries, screening, reconciliation, metrics)."""
    _require_secret_key()
    settings = get_settings()
    n = concurrency or settings.worker_concurrency
    _exec_module("celery", "-A", "workers.app", "worker", "-l", loglevel, "-c", str(n), "-Q", settings.queue,
                 "--without-mingle", "--without-gossip")  # fmt: skip


@app.command()
def beat(loglevel: str = "info") -> None:
    """Run Celery beat: the pollers that dispatch due posts, reconcile and collect metrics."""
    _require_secret_key()
    schedule = get_settings().data_dir / "beat-schedule"
    _exec_module("celery", "-A", "workers.app", "beat", "-l", loglevel, "-s", str(schedule))


@app.command()
def flower(
    port: int = 5555,
    address: str = typer.Option(
        "127.0.0.1", help="Listen here. Flower (and its /metrics) has no sign-in: keep it off public addresses."
    ),
) -> None:
    """Run Flower, Celery's monitoring UI (on localhost unless told otherwise)."""
    _exec_module("celery", "-A", "workers.app", "flower", f"--port={port}", f"--address={address}")


@app.command()
def sandbox(host: str = typer.Option(None), port: int = typer.Option(None)) -> None:
    """Serve the platform sandboxes (WordPress, WeChat, Weibo, Toutiao) on one port."""
    settings = get_settings()
    _exec_module("channels.sandbox", "--host", host or settings.sandbox_host,
                 "--port", str(port or settings.sandbox_port))  # fmt: skip


@app.command()
def up(demo: bool = typer.Option(True, help="Seed demo organisation, accounts and a post on a new database.")) -> None:
    """Migrate, seed demo data on a new database, and run sandboxes, API, a worker and beat. Ctrl-C stops all."""

    _require_secret_key()  # before anything starts (on the embedded default: creates the key file)
    settings = get_settings()
    # Checked before anything starts: with a port taken (another `matrix up`, say) the readiness checks below
    # would be answered by the other instance.
    for what, host, port, var in (
        ("API", settings.api_host, settings.api_port, "MATRIX_API_PORT"),
        ("sandboxes", settings.sandbox_host, settings.sandbox_port, "MATRIX_SANDBOX_PORT"),
    ):
        if not _port_free(host, port):
            fail(f"{host}:{port} ({what}) is in use, by another `matrix up` perhaps; stop it or set {var}")
    fresh = migrate.current() is None
    migrate.upgrade()
    children: list[subprocess.Popen] = []

    def start(*args: str) -> None:
        # our own interpreter and CLI, arguments as a list (no shell)
        children.append(subprocess.Popen([sys.executable, "-m", "publisher.interfaces.cli", *args]))  # noqa: S603

    start("sandbox")
    _wait_http(f"{settings.sandbox_url}/", 30)
    if fresh and demo:
        with user_errors():
            specs = fetch_demo_accounts(settings.sandbox_url)
        with _session() as session:
            seed(session, specs, with_post=True)
    start("api")
    start("worker")
    start("beat")
    _wait_http(f"http://{settings.api_host}:{settings.api_port}/health", 60)
    table = Table(title="media-matrix is running", show_header=False)
    table.add_row("Web / API", f"http://{settings.api_host}:{settings.api_port}  (OpenAPI: /docs)")
    table.add_row("Sandboxes", settings.sandbox_url)
    table.add_row("Database", settings.database_url)
    table.add_row("Broker", settings.broker_url)
    console.print(table)
    console.print("Ctrl-C stops everything.")
    stopping = False

    def stop(*_a: Any) -> None:
        nonlocal stopping
        stopping = True

    # Explicit handlers: a process started in the background inherits SIGINT ignored, so Ctrl-C / kill -INT
    # would otherwise leave the children running.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.5)
    died = [c for c in children if c.poll() is not None] if not stopping else []
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT if os.name != "nt" else signal.SIGTERM)
    deadline = time.time() + 15
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            child.kill()
    if died:
        names = ", ".join(f"`matrix {c.args[3]}` (exit {c.returncode})" for c in died)
        err.print(f"[red]error:[/red] {names} stopped on its own; everything was stopped (see its log above)")
        raise typer.Exit(1)
    console.print("stopped.")


def _port_free(host: str, port: int) -> bool:
    """True if a server could listen on ``host:port`` now (bound the way uvicorn binds it)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_http(url: str, timeout: float) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    fail(f"{url} did not answer within {timeout:.0f} s")


# ----------------------------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations to the configured database."""

    migrate.upgrade(revision=revision)
    console.print(f"database at revision {migrate.current()}")


# ------------------------------------------------------------------------------------------ accounts


def _json_option(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(value, dict):
        fail(f"{what} must be a JSON object")
    return value


@account_app.command("add")
def account_add(
    kind: str = typer.Argument(..., help="Channel kind: website, wechat, weibo, toutiao, manual."),
    name: str = typer.Argument(...),
    credentials: str = typer.Option(..., help='JSON, e.g. \'{"username": "u", "app_password": "p"}\''),
    config: str = typer.Option(None, help='JSON, e.g. \'{"base_url": "https://example.org"}\''),
    org: str = typer.Option("default", help="Organisation name (created if new)."),
    check: bool = typer.Option(True, help="Ask the platform whether the credentials work before storing them."),
) -> None:
    """Register a platform account (credentials are checked with the platform, then encrypted at rest)."""

    creds, conf = _json_option(credentials, "--credentials"), _json_option(config, "--config")
    with user_errors():
        if check:
            services.check_new_account(kind, name, creds, conf)
    with user_errors(), _session() as session:
        account = services.add_account(session, kind=kind, name=name, credentials=creds, config=conf, organization=org)
        session.flush()
        console.print(f"account {account.id} added: {kind} {name}")


@account_app.command("list")
def account_list() -> None:
    """List accounts and their status."""
    with _session() as session:
        rows = services.account_rows(session)
    table = Table("id", "kind", "name", "organisation", "status", "paused until", "reason")
    for a in rows:
        table.add_row(str(a["id"]), a["kind"], a["name"], a["organization"], a["status"],
                      _local(a["paused_until"]), a["status_reason"] or "")  # fmt: skip
    console.print(table)


@account_app.command("reauth")
def account_reauth(
    account_id: int,
    credentials: str = typer.Option(..., help="New credentials as JSON."),
    check: bool = typer.Option(True, help="Ask the platform whether the credentials work before storing them."),
) -> None:
    """Store new credentials for an account that needs re-authorisation and release its deliveries."""

    creds = _json_option(credentials, "--credentials")
    with user_errors():
        if check:
            services.check_new_credentials(account_id, creds)
    with user_errors(), _session() as session:
        account = services.reauthorize_account(session, account_id, creds, actor="cli")
        console.print(f"account {account.id} is active again")


# --------------------------------------------------------------------------------------------- posts


def _read_body(body_file: Path | None, body: str | None) -> str:
    if body is not None:
        return body
    if body_file is None:
        fail("give the body with --body-file FILE (or - for standard input) or --body TEXT")
    if str(body_file) == "-":
        try:
            text: str | None = sys.stdin.read()
        except UnicodeDecodeError:  # a strict decoder; a lenient one leaves surrogates (see _not_utf8)
            text = None
        if text is None or _not_utf8(text):
            fail("standard input is not UTF-8 text")
        return text or ""
    try:
        return body_file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {body_file}: {exc.strerror}")
    except UnicodeDecodeError:
        fail(f"{body_file} is not UTF-8 text")
    return ""


@post_app.command("create")
def post_create(
    title: str = typer.Option(..., "--title", "-t"),
    account: list[str] = typer.Option(..., "--account", "-a", help="Target account id or name; repeat."),
    body_file: Path = typer.Option(None, "--body-file", "-f", help="Markdown file, or - for stdin."),
    body: str = typer.Option(None, "--body", help="Markdown text (instead of --body-file)."),
    summary: str = typer.Option("", "--summary"),
    cover: str = typer.Option(None, "--cover", help="Cover image URL."),
    at: str = typer.Option(None, "--at", help="Schedule too: local time like '2026-12-01 09:00', or 'now'."),
    author: str = typer.Option("editor", "--author"),
) -> None:
    """Create a post for some accounts and send it to screening (and schedule it with --at)."""

    text = _read_body(body_file, body)
    with user_errors():
        due = parse_local(at) if at else None
        with _session() as session:
            post = services.create_post(
                session, title=title, body=text, accounts=account, summary=summary, cover_url=cover, author=author
            )
            if due is not None:
                services.schedule_post(session, post.id, due, actor=author)
            session.flush()
            console.print(f"post {post.id} created ({post.state})" + (f", scheduled for {at}" if due else ""))


@post_app.command("edit")
def post_edit(
    post_id: int,
    title: str = typer.Option(None, "--title", "-t"),
    body_file: Path = typer.Option(None, "--body-file", "-f"),
    body: str = typer.Option(None, "--body"),
    summary: str = typer.Option(None, "--summary"),
) -> None:
    """Edit a post: a new version, screened again."""

    text = _read_body(body_file, body) if (body_file or body is not None) else None
    with user_errors(), _session() as session:
        post = services.edit_post(session, post_id, title=title, body=text, summary=summary, actor="cli")
        console.print(f"post {post.id} is now version {post.current_version.number} ({post.state})")


@post_app.command("submit")
def post_submit(post_id: int) -> None:
    """Send a draft to screening."""

    with user_errors(), _session() as session:
        console.print(f"post {services.submit_post(session, post_id, actor='cli').id} sent to screening")


@post_app.command("schedule")
def post_schedule(
    post_id: int, at: str = typer.Option(..., "--at", help="'2026-12-01 09:00' (local) or 'now'.")
) -> None:
    """Schedule a post; it goes out at that time once its current version is approved."""

    with user_errors():
        due = parse_local(at)
        with _session() as session:
            services.schedule_post(session, post_id, due, actor="cli")
            console.print(f"post {post_id} scheduled for {format_local(due)}")


def _review(post_id: int, approve: bool, reason: str) -> None:

    with user_errors(), _session() as session:
        services.review(session, post_id, approve=approve, reason=reason, reviewer="cli")
        console.print(f"post {post_id} {'approved' if approve else 'rejected'}")


@post_app.command("approve")
def post_approve(post_id: int, reason: str = typer.Option("", "--reason")) -> None:
    """Approve a post that screening sent to review."""
    _review(post_id, True, reason)


@post_app.command("reject")
def post_reject(post_id: int, reason: str = typer.Option(..., "--reason")) -> None:
    """Reject a post (a reason is required)."""
    _review(post_id, False, reason)


@post_app.command("retry")
def post_retry(post_id: int) -> None:
    """Retry only the deliveries that failed."""

    with user_errors(), _session() as session:
        failed = services.retry_post(session, post_id, actor="cli")
        console.print(f"retrying {len(failed)} deliveries of post {post_id}")


@post_app.command("retract")
def post_retract(post_id: int) -> None:
    """Retract a post from every platform; reports per account."""
    with user_errors():
        lines = retract.retract_post(post_id, actor="cli")
    table = Table("delivery", "account", "kind", "outcome", "detail", title=f"post {post_id} retracted")
    for line in lines:
        table.add_row(str(line["delivery"]), line["account"], line["kind"], line["outcome"], line["detail"])
    console.print(table)


@post_app.command("show")
def post_show(post_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """A post's state, screening and per-delivery state, remote URL, attempts and last error."""
    with user_errors(), _session() as session:
        info = services.post_detail(session, post_id)
    if as_json:
        console.print_json(json.dumps(info, ensure_ascii=False))
        return
    console.print(f"[bold]post {info['id']}[/bold] v{info['version']}: {info['title']}  [cyan]{info['state']}[/cyan]")
    if info["screening"]:
        s = info["screening"]
        console.print(f"screening: {s['decision']}  hits: {len(s.get('hits', []))}")
        for hit in s.get("hits", [])[:10]:
            if hit["source"] == "model":  # the evidence is the whole text: show the score, not the text again
                score = s.get("categories", {}).get(hit["category"], 0.0)
                console.print(f"  {hit['category']} (model): score {score:.2f} for the whole post", highlight=False)
                continue
            w = hit["where"]
            console.print(
                f"  {hit['category']} ({hit['source']}, {escape(hit['term'])}) in the {w['field']}: "
                f"…{escape(w['before'])}[bold red]{escape(hit['text'])}[/bold red]{escape(w['after'])}…",
                highlight=False,
            )
    if info["schedule"]:
        console.print(f"schedule: {_local(info['schedule']['due_at'])} ({info['schedule']['state']})")
    table = Table("delivery", "account", "kind", "state", "attempts", "remote URL", "last error")
    # A URL is copied, not read: fold it over lines rather than cut it with an ellipsis on a narrow terminal.
    table.columns[5].overflow = "fold"
    for d in info["deliveries"]:
        table.add_row(
            str(d["id"]),
            d["account"],
            d["kind"],
            d["state"],
            str(d["attempts"]),
            d["remote_url"] or "",
            d["last_error"] or "",
        )
    console.print(table)


@post_app.command("list")
def post_list(state: str = typer.Option(None, "--state"), limit: int = typer.Option(100, "--limit")) -> None:
    """List posts, newest first."""
    with user_errors(), _session() as session:
        rows = services.post_rows(session, state=state, limit=limit)
    table = Table("id", "state", "title", "updated")
    for p in rows:
        table.add_row(str(p["id"]), p["state"], p["title"] or "", _local(p["updated_at"]))
    console.print(table)


# ------------------------------------------------------------------------------------------ delivery


@delivery_app.command("confirm")
def delivery_confirm(delivery_id: int, url: str = typer.Option(..., "--url")) -> None:
    """Record the URL of an assisted (manual) delivery once an operator has posted it."""
    with user_errors():
        d = assisted.confirm_manual(delivery_id, url, actor="cli")
    console.print(f"delivery {d.id} published at {url}")


@delivery_app.command("removed")
def delivery_removed(delivery_id: int) -> None:
    """Record that an assisted delivery was deleted by hand after its post was retracted."""
    with user_errors():
        d = assisted.confirm_removed(delivery_id, actor="cli")
    console.print(f"delivery {d.id} recorded as removed ({d.remote_url})")


@delivery_app.command("package")
def delivery_package(delivery_id: int, output: Path = typer.Option(..., "--output", "-o")) -> None:
    """Download the ready-to-paste package (ZIP) of an assisted delivery."""
    _writable(output)
    with user_errors():
        data = assisted.package_for(delivery_id)
    try:
        output.write_bytes(data)
    except OSError as exc:  # the checks above cannot foresee everything (a full disk, say)
        fail(f"cannot write {output}: {exc.strerror}")
    console.print(f"wrote {output} ({len(data)} bytes)")


@app.command("notifications")
def notifications_cmd(
    user: str = typer.Option("editor", "--user", "-u"),
    all_: bool = typer.Option(False, "--all", help="Read ones too."),
    keep_unread: bool = typer.Option(False, "--keep-unread", help="Do not mark the ones shown as read."),
) -> None:
    """Show a person's unread notifications (and mark them read)."""
    with user_errors(), _session() as session:
        rows = services.notification_rows(session, user, unread_only=not all_, mark_read=not keep_unread)
    table = Table("when", "kind", "post", "message", title=f"notifications for {user}")
    for n in rows:
        table.add_row(_local(n["created_at"]), n["kind"], str(n["post"] or ""), n["message"])
    console.print(table)


# ------------------------------------------------------------------------------------------ terms


@terms_app.command("add")
def terms_add(
    org: str = typer.Argument(..., help="Organisation name."),
    term: str = typer.Argument(...),
    list_: str = typer.Option("deny", "--list", help="deny or allow"),
    category: str = typer.Option("custom", "--category"),
    severity: str = typer.Option("review", "--severity", help="block or review"),
) -> None:
    """Add a term to an organisation's deny- or allow-list (takes effect without a restart)."""

    with user_errors(), _session() as session:
        found = session.scalar(select(Organization).where(Organization.name == org))
        if found is None:
            fail(f"organisation {org!r} not found")
        _entry, created = services.add_moderation_term(
            session, found.id, term, list_=list_, category=category, severity=severity
        )
    done = "added" if created else "updated"
    console.print(f"{list_}-list of {org}: {done} {term!r} ({category}, {severity})")


# ---------------------------------------------------------------------------------------- secrets


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored credential with MATRIX_SECRET_KEY (earlier keys in MATRIX_OLD_SECRET_KEYS).

    One transaction: either every credential is re-encrypted or none is (a credential no key can decrypt
    stops it with one line, and nothing is lost).
    """
    with user_errors(), _session() as session:
        accounts = session.scalars(select(Account).order_by(Account.id).with_for_update()).all()
        for account in accounts:
            account.credentials_enc = rotate(account.credentials_enc)
        services.audit(session, "cli", "secrets.rotate", None, accounts=len(accounts))
    console.print(f"re-encrypted the credentials of {len(accounts)} accounts with the current key")


# ------------------------------------------------------------------------------------------- demo


@demo_app.command("seed")
def demo_seed(post: bool = typer.Option(False, "--post", help="Also create and schedule a demo post now.")) -> None:
    """Create the demo organisations, users and sandbox accounts (idempotent)."""
    with user_errors():
        specs = fetch_demo_accounts(get_settings().sandbox_url)
    with _session() as session:
        accounts = seed(session, specs, with_post=post)
        console.print(f"demo data ready: {len(accounts)} sandbox accounts")


@app.callback()
def _configure() -> None:
    # The moderation engine reads no settings of its own: `matrix screen` (and anything else that screens in
    # this process) gets MATRIX_MODERATION_* through this, before any command runs. Cheap: nothing loads yet.
    configure_moderation()
    # Before anything logs: no credential reaches a log line, whichever library writes it.
    logredact.install()


app.command("screen", help="Screen text with the moderation engine (or a JSONL file).")(screen_command)


def main(argv: list[str] | None = None) -> Callable[..., Any]:
    """Entry point for ``python -m publisher.cli``."""
    return app(argv)


if __name__ == "__main__":
    app()
