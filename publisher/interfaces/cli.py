"""The ``matrix`` command line (Typer + Rich).

Errors a user can fix (unknown account, time in the past, empty body…) print one line and exit 2.

The CLI acts as a signed-in user: ``matrix login`` keeps a personal token in ``<config dir>/token`` (mode 0600;
the folder is ``MATRIX_CLI_CONFIG_DIR`` or the platform's config folder for media-matrix), and ``MATRIX_TOKEN``
overrides it. Every command that reads or changes data authenticates with it and passes the person on to the
services, which decide what they may do. The process commands (``api``, ``worker``, ``beat``, ``flower``,
``sandbox``, ``up``, ``db upgrade``) and ``screen`` need no sign-in.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.core import TyperGroup

from core import audit as audit_log
from core import logredact
from core.broker import screening_queue, status_queue
from core.clock import format_local, parse_local
from core.crypto import check_secret_key, rotate
from core.db import session_scope
from core.errors import Unauthenticated
from core.metrics import ensure_multiprocess_dir
from core.settings import get_settings, settings_problem
from moderation.cli import screen_command
from monitor.alert_channels import rotate_secrets as rotate_alert_channel_secrets
from monitor.demo import seed_monitor
from monitor.settings import monitor_queue
from publisher import migrate, services
from publisher.delivery import assisted, retract
from publisher.domain.models import Account, Organization
from publisher.interfaces import live_flags, monitor_cli
from publisher.interfaces.cli_common import (
    _principal,
    _source,
    _stored_token,
    _token,
    _token_file,
    console,
    err,
    fail,
    user_errors,
)
from publisher.services import Principal, organizations, rescreen
from publisher.services.demo import DEMO_PEOPLE, fetch_demo_accounts, seed, seed_people
from publisher.services.demo import PROVINCE as DEMO_ORGANIZATION
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
user_app = typer.Typer(help="People: add, passwords, roles, disable (admins).", no_args_is_help=True)
token_app = typer.Typer(help="Your personal API tokens.", no_args_is_help=True)
org_app = typer.Typer(help="Organisations.", no_args_is_help=True)
chain_app = typer.Typer(help="An organisation's review chain (三审).", no_args_is_help=True)
alias_app = typer.Typer(help="Other names of an organisation, counted by the monitor as mentions of it.",
                        no_args_is_help=True)  # fmt: skip
audit_app = typer.Typer(help="The audit trail: verify its hash chain, read it (admins).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(account_app, name="account")
app.add_typer(post_app, name="post")
app.add_typer(delivery_app, name="delivery")
app.add_typer(demo_app, name="demo")
app.add_typer(terms_app, name="terms")
app.add_typer(secrets_app, name="secrets")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(org_app, name="org")
org_app.add_typer(chain_app, name="chain")
org_app.add_typer(alias_app, name="alias")
app.add_typer(audit_app, name="audit")
moderation_app = typer.Typer(help="Screening: reviewers' feedback and allow-list proposals.", no_args_is_help=True)
feedback_app = typer.Typer(help="Reviewers' feedback on screening.", no_args_is_help=True)
moderation_app.add_typer(feedback_app, name="feedback")
app.add_typer(moderation_app, name="moderation")
app.add_typer(monitor_cli.app, name="monitor")


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


# ------------------------------------------------------------------------------------------ signing in


def _signed_in() -> Principal:
    """:func:`_principal` in a transaction of its own, for commands whose services open their own."""
    with user_errors(), _session() as session:
        return _principal(session)


def _require_signed_in() -> None:
    """One line before any prompt if no token is there at all (the token itself is checked later)."""
    if _token() is None:
        fail("not signed in: run `matrix login`")


def _write_token(path: Path, secret: str) -> None:
    """Store ``secret`` at ``path``, readable by this user alone (mode 0600), replacing any earlier one."""
    tmp = path.parent / f".token.{os.getpid()}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        fail(f"cannot write {exc.filename or path}: {exc.strerror}")


def _password_from_stdin() -> str:
    """The first line of standard input, without its line end."""
    try:
        line = sys.stdin.readline()
    except UnicodeDecodeError:
        line = None
    if line is None or _not_utf8(line):
        fail("standard input is not UTF-8 text")
    password = line.rstrip("\r\n")
    if not password:
        fail("no password on standard input")
    return password


def _role_at(text: str) -> tuple[str, str]:
    """``ROLE@ORG`` as (role, organisation name or id)."""
    role, sep, org = text.partition("@")
    if not sep or not role.strip() or not org.strip():
        fail(f"{text!r}: give a role as ROLE@ORG, e.g. editor@省总工会 (ORG: a name or an id)")
    return role.strip(), org.strip()


def _roles_text(session, actor: Principal) -> str:
    roles = services.whoami(session, actor)["roles"]
    return ", ".join(f"{r['role']}@{r['organization']}" for r in roles) or "no role"


@app.command()
def login(
    user: str = typer.Option(None, "--user", "-u", help="User name (asked for if not given)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
) -> None:
    """Sign in: keeps a personal token for this CLI in its config folder (never printed)."""
    name = user if user is not None else typer.prompt("user")
    password = _password_from_stdin() if password_stdin else typer.prompt("password", hide_input=True)
    path = _token_file()
    earlier = _stored_token()
    host = socket.gethostname()
    with user_errors():
        actor = services.sign_in(name, password, source=_source())  # its own transaction: not inside another
        with _session() as session:
            _row, secret, _csrf = services.issue_credential(session, actor, kind="token", name=f"cli on {host}")
            if earlier is not None:  # the token this one replaces stops working (if it still did)
                try:
                    old = services.authenticate(session, earlier, source=_source())
                    if old.credential_id is not None and old.user_id == actor.user_id:
                        services.revoke_credential(session, old, old.credential_id)
                except Unauthenticated:
                    pass
            roles = _roles_text(session, actor)
            _write_token(path, secret)  # inside the transaction: a token that could not be stored is not kept
    console.print(f"signed in as {escape(actor.name)} ({escape(roles)})", highlight=False)


@app.command()
def logout() -> None:
    """Sign out: revoke this CLI's token and delete it."""
    path = _token_file()
    token = _stored_token()
    if token is None:
        hint = " (MATRIX_TOKEN is set: unset it, or revoke it with `matrix token revoke ID`)"
        console.print("no token stored here" + (hint if os.environ.get("MATRIX_TOKEN") else ""))
        return
    name = None
    with user_errors(), _session() as session:
        try:
            actor = services.authenticate(session, token, source=_source())
        except Unauthenticated:
            actor = None  # revoked or expired already: nothing to revoke
        if actor is not None and actor.credential_id is not None:
            services.revoke_credential(session, actor, actor.credential_id)
            name = actor.name
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        fail(f"cannot delete {path}: {exc.strerror}")
    console.print(f"signed out{f' ({escape(name)})' if name else ''}", highlight=False)


@app.command()
def whoami() -> None:
    """Who you are signed in as, and your roles on which organisations."""
    with user_errors(), _session() as session:
        info = services.whoami(session, _principal(session))
    console.print(f"[bold]{escape(info['name'])}[/bold]", highlight=False)
    for r in info["roles"]:
        console.print(f"  {escape(r['role'])}@{escape(str(r['organization']))}", highlight=False)
    if not info["roles"]:
        console.print("  no role")


# -------------------------------------------------------------------------------------------- users


@user_app.command("add")
def user_add(
    name: str = typer.Argument(...),
    role: list[str] = typer.Option(..., "--role", "-r", help="ROLE@ORG (ORG: a name or an id); repeat."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (else one is made and shown once)."
    ),
) -> None:
    """Add a user (admins). The very first user needs no sign-in, must be an admin, and creates the
    organisation named if it is new."""
    grants = [_role_at(r) for r in role]
    password = _password_from_stdin() if password_stdin else None
    made = password is None
    if password is None:
        password = secrets.token_urlsafe(12)
    with user_errors(), _session() as session:
        actor: Principal | None = None
        if services.users_exist(session):
            actor = _principal(session)
        else:  # the bootstrap: the first admin's organisation, by name, may be new
            for _role, org in grants:
                if not org.isdigit():
                    services.ensure_organization(session, org)
        user = services.create_user(session, actor, name, password, grants)
        session.flush()
        user_id, user_name = user.id, user.name
        roles = ", ".join(f"{r}@{o}" for r, o in grants)
    console.print(f"user {user_id} added: {escape(user_name)} ({escape(roles)})", highlight=False)
    if made:
        console.print(f"password: {password}", highlight=False, soft_wrap=True)
        console.print("(shown once: pass it on now; change it with `matrix user passwd`)")


@user_app.command("passwd")
def user_passwd(
    name: str = typer.Argument(None, help="Whose password (default: yours)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from standard input."),
) -> None:
    """Change your password, or (admins) someone else's."""
    _require_signed_in()
    if password_stdin:
        password = _password_from_stdin()
    else:
        password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    with user_errors(), _session() as session:
        actor = _principal(session)
        user = services.set_password(session, actor, name if name is not None else actor.user_id, password)
        shown = user.name
    console.print(f"password of {escape(shown)} changed", highlight=False)


@user_app.command("disable")
def user_disable(name: str) -> None:
    """Disable a user: no more sign-ins, and their tokens and sessions stop working."""
    with user_errors(), _session() as session:
        user = services.disable_user(session, _principal(session), name)
        shown = user.name
    console.print(f"user {escape(shown)} disabled", highlight=False)


@user_app.command("grant")
def user_grant(name: str, role_at: str = typer.Argument(..., metavar="ROLE@ORG")) -> None:
    """Give a user a role on an organisation (and the organisations below it)."""
    role, org = _role_at(role_at)
    with user_errors(), _session() as session:
        services.grant_role(session, _principal(session), name, role, org)
    console.print(f"{escape(name)} is now {escape(role)}@{escape(org)}", highlight=False)


@user_app.command("list")
def user_list() -> None:
    """The users you look after, with their roles."""
    with user_errors(), _session() as session:
        rows = services.user_rows(session, _principal(session))
    table = Table("id", "name", "roles", "status", title="users")
    for u in rows:
        roles = ", ".join(f"{r['role']}@{r['organization']}" for r in u["roles"])
        table.add_row(str(u["id"]), u["name"], roles, "disabled" if u["disabled"] else "active")
    console.print(table)


# ------------------------------------------------------------------------------------------- tokens


@token_app.command("create")
def token_create(name: str = typer.Argument(..., help="What it is for: 'ci', 'backup script'…")) -> None:
    """A new personal API token (``Authorization: Bearer …``, or ``MATRIX_TOKEN`` for this CLI)."""
    with user_errors(), _session() as session:
        row, secret, _csrf = services.issue_credential(session, _principal(session), kind="token", name=name)
        session.flush()
        token_id = row.id
    console.print(f"token {token_id} created: {escape(name)}", highlight=False)
    console.print(secret, highlight=False, soft_wrap=True)
    console.print("(shown once: store it now; only its hash is kept)")


@token_app.command("list")
def token_list() -> None:
    """Your tokens and sessions that are not revoked (never their secrets)."""
    with user_errors(), _session() as session:
        rows = services.token_rows(session, _principal(session))
    table = Table("id", "kind", "name", "created", "last used", "expires")
    for t in rows:
        table.add_row(str(t["id"]), t["kind"], t["name"], t["created_at"], t["last_used_at"], t["expires_at"])
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token (or session) at once."""
    with user_errors(), _session() as session:
        services.revoke_credential(session, _principal(session), token_id)
    console.print(f"token {token_id} revoked")


# ---------------------------------------------------------------------------------------- processes


@app.command()
def api(host: str = typer.Option(None), port: int = typer.Option(None)) -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    _require_secret_key()
    settings = get_settings()
    ensure_multiprocess_dir(settings.data_dir)  # before the server's process imports the metrics (exec below)
    _exec_module("uvicorn", "publisher.interfaces.api:app", "--host", host or settings.api_host,
                 "--port", str(port or settings.api_port), "--log-level", "info")  # fmt: skip


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
def worker(
    concurrency: int = typer.Option(None, "--concurrency", "-c"),
    kind: str = typer.Option(
        "all",
        "--kind",
        help="all (every queue: the embedded default), delivery (platform calls: threads, no classifier), "
        "screening (CPU: processes with the classifier), monitor (feed fetching).",
    ),
    loglevel: str = "info",
) -> None:
    """Run a Celery worker for one kind of work, or all of it (deliveries, screening, reconciliation, metrics)."""
    _require_secret_key()
    settings = get_settings()
    queues = {
        # status checks first (core.broker.status_queue): they are short, and a copy settles when they run
        "all": [status_queue(settings), settings.queue, screening_queue(settings)],
        "delivery": [status_queue(settings), settings.queue],
        "screening": [screening_queue(settings)],
        "monitor": [monitor_queue()],
    }
    if kind not in queues:
        fail(f"--kind {kind!r}: choose all, delivery, screening or monitor")
    os.environ["MATRIX_WORKER_KIND"] = kind  # the worker app reads it: what to preload, which queues to add
    pool: list[str] = []
    n = concurrency or settings.worker_concurrency
    if kind == "delivery":
        # Deliveries wait on the network, not the CPU: many in flight per process, in threads, in little memory.
        n = concurrency or settings.delivery_threads
        pool = ["--pool", "threads"]
        os.environ.setdefault("MATRIX_DB_POOL_SIZE", str(n + 2))
    ensure_multiprocess_dir(settings.data_dir)  # the pool's processes count into files GET /metrics sums
    _exec_module("celery", "-A", "workers.app", "worker", "-l", loglevel, "-c", str(n), "-Q", ",".join(queues[kind]),
                 *pool, "--without-mingle", "--without-gossip")  # fmt: skip


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
def up(
    demo: bool = typer.Option(True, help="Seed demo organisations, users, accounts and a post on a new database."),
) -> None:
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
    # the processes below count into one folder that GET /metrics sums; a new run starts it afresh
    metrics_dir = Path(ensure_multiprocess_dir(settings.data_dir))
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    children: list[subprocess.Popen] = []

    def start(*args: str) -> None:
        # our own interpreter and CLI, arguments as a list (no shell)
        children.append(subprocess.Popen([sys.executable, "-m", "publisher.interfaces.cli", *args]))  # noqa: S603

    start("sandbox")
    _wait_http(f"{settings.sandbox_url}/", 30)
    passwords: dict[str, str] = {}
    if fresh and demo:
        with user_errors():
            specs = fetch_demo_accounts(settings.sandbox_url)
        with _session() as session:
            passwords = seed_people(session)  # first: the demo post is the demo editor's
            seed(session, specs, with_post=True)
            # a monitor signing in finds feeds, the comments on our posts and two rules being watched
            seed_monitor(session, services.SYSTEM, settings.sandbox_url, DEMO_ORGANIZATION)
    with _session() as session:
        nobody = not services.users_exist(session)
    start("api")
    start("worker")
    start("beat")
    flower_port = _free_port_near(5555)
    start("flower", "--port", str(flower_port))
    _wait_http(f"http://{settings.api_host}:{settings.api_port}/health", 60)
    table = Table(title="media-matrix is running", show_header=False)
    table.add_row("Web / API", f"http://{settings.api_host}:{settings.api_port}/  (sign in there; API: /docs)")
    table.add_row("Sandboxes", settings.sandbox_url)
    table.add_row("Flower", f"http://127.0.0.1:{flower_port}/  (Celery's tasks and workers)")
    table.add_row("Metrics", f"http://{settings.api_host}:{settings.api_port}/metrics  (Prometheus; admins)")
    table.add_row("Database", settings.database_url)
    table.add_row("Broker", settings.broker_url)
    console.print(table)
    if passwords:
        _print_demo_people(passwords)
    elif nobody:
        console.print("no users yet: add the first admin with `matrix user add NAME --role admin@ORGANISATION`")
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


def _free_port_near(port: int) -> int:
    """``port`` if free on localhost, else the next free one of the ten after it (Flower is a convenience:
    another program on 5555 should not stop `matrix up`)."""
    for candidate in range(port, port + 10):
        if _port_free("127.0.0.1", candidate):
            return candidate
    return port


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
    org: str = typer.Option(None, help="Organisation name or id (default: the one you are an admin of)."),
    check: bool = typer.Option(True, help="Ask the platform whether the credentials work before storing them."),
) -> None:
    """Register a platform account (credentials are checked with the platform, then encrypted at rest)."""

    creds, conf = _json_option(credentials, "--credentials"), _json_option(config, "--config")
    actor = _signed_in()
    with user_errors():
        if check:
            services.check_new_account(actor, kind, name, creds, conf)
    with user_errors(), _session() as session:
        actor = _principal(session)
        account = services.add_account(
            session, actor, kind=kind, name=name, credentials=creds, config=conf, organization=org
        )
        session.flush()
        console.print(f"account {account.id} added: {kind} {name}")


@account_app.command("list")
def account_list() -> None:
    """List accounts and their status."""
    with user_errors(), _session() as session:
        rows = services.account_rows(session, _principal(session))
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
    actor = _signed_in()
    with user_errors():
        if check:
            services.check_new_credentials(actor, account_id, creds)
    with user_errors(), _session() as session:
        account = services.reauthorize_account(session, _principal(session), account_id, creds)
        console.print(f"account {account.id} is active again")


# --------------------------------------------------------------------------------------------- posts


_VARIANT_HELP = "A platform's own text: KIND=TEXT or KIND=@FILE (e.g. weibo=@short.md); repeatable."


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
    cover: str = typer.Option(None, "--cover", help="Cover image: a file to upload, or a URL."),
    at: str = typer.Option(None, "--at", help="Schedule too: local time like '2026-12-01 09:00', or 'now'."),
    variant: list[str] = typer.Option(None, "--variant", help=_VARIANT_HELP),
    variant_title: list[str] = typer.Option(None, "--variant-title", help="A platform's own title: KIND=TITLE."),
) -> None:
    """Create a post for some accounts and send it to screening (and schedule it with --at)."""

    text = _read_body(body_file, body)
    variants = _variant_options(variant, variant_title)
    with user_errors():
        due = parse_local(at) if at else None
        with _session() as session:
            actor = _principal(session)
            if cover and account:
                cover = _cover_ref(session, actor, cover, services.find_account(session, account[0]).organization_id)
            post = services.create_post(
                session,
                actor,
                title=title,
                body=text,
                accounts=account,
                summary=summary,
                cover_url=cover,
                variants=variants,
            )
            if due is not None:
                services.schedule_post(session, actor, post.id, due)
            session.flush()
            console.print(f"post {post.id} created ({post.state})" + (f", scheduled for {at}" if due else ""))


@post_app.command("edit")
def post_edit(
    post_id: int,
    title: str = typer.Option(None, "--title", "-t"),
    body_file: Path = typer.Option(None, "--body-file", "-f"),
    body: str = typer.Option(None, "--body"),
    summary: str = typer.Option(None, "--summary"),
    cover: str = typer.Option(None, "--cover", help="New cover image: a file to upload, or a URL."),
    variant: list[str] = typer.Option(None, "--variant", help=_VARIANT_HELP + " KIND= removes it."),
    variant_title: list[str] = typer.Option(None, "--variant-title", help="A platform's own title: KIND=TITLE."),
) -> None:
    """Edit a post: a new version, screened again (a failed post too: then `matrix post retry` once approved)."""

    text = _read_body(body_file, body) if (body_file or body is not None) else None
    changes = _variant_options(variant, variant_title)
    with user_errors(), _session() as session:
        actor = _principal(session)
        visible = services.visible_post(session, actor, post_id)
        if cover:
            cover = _cover_ref(session, actor, cover, visible.organization_id)
        variants = None
        if changes:  # the options change the platforms they name; the others keep their own texts
            current = visible.current_version.variants if visible.current_version else {}
            variants = {kind: dict(v) for kind, v in (current or {}).items()}
            for kind, fields in changes.items():
                variants[kind] = {**variants.get(kind, {}), **fields}
        post = services.edit_post(
            session, actor, post_id, title=title, body=text, summary=summary, cover_url=cover, variants=variants
        )
        console.print(f"post {post.id} is now version {post.current_version.number} ({post.state})")


def _variant_options(bodies: list[str] | None, titles: list[str] | None) -> dict[str, dict[str, str]]:
    """``--variant`` / ``--variant-title`` options as ``{kind: {"body"/"title": text}}``."""
    out: dict[str, dict[str, str]] = {}
    for option, key, values in (("--variant", "body", bodies), ("--variant-title", "title", titles)):
        for value in values or []:
            kind, sep, text = value.partition("=")
            if not sep or not kind.strip():
                fail(f"{option} {value!r}: give KIND=TEXT, e.g. {option} weibo=...")
            if key == "body" and text.startswith("@"):
                text = _read_body(Path(text[1:]), None)
            out.setdefault(kind.strip(), {})[key] = text
    return out


def _cover_ref(session: Session, actor: Principal, cover: str, org_id: int) -> str:
    """``--cover``: a URL (or ``media:<id>``) as given; a local file is uploaded and referred to as ``media:<id>``."""
    if cover.split(":", 1)[0].lower() in ("http", "https", "data", "media"):
        return cover
    path = Path(cover).expanduser()
    if not path.is_file():
        fail(f"--cover {cover}: no such file (give an image file or an http(s) URL)")
    try:
        with path.open("rb") as fh:
            data = fh.read(services.COVER_MAX_BYTES + 1)  # one byte more: the service says it is too large
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    media = services.upload_image(session, actor, org_id, data, path.name)
    return services.media_ref(media)


@post_app.command("submit")
def post_submit(post_id: int) -> None:
    """Send a draft to screening."""

    with user_errors(), _session() as session:
        console.print(f"post {services.submit_post(session, _principal(session), post_id).id} sent to screening")


@post_app.command("schedule")
def post_schedule(
    post_id: int, at: str = typer.Option(..., "--at", help="'2026-12-01 09:00' (local) or 'now'.")
) -> None:
    """Schedule a post; it goes out at that time once its current version is approved."""

    with user_errors():
        due = parse_local(at)
        with _session() as session:
            services.schedule_post(session, _principal(session), post_id, due)
            console.print(f"post {post_id} scheduled for {format_local(due)}")


def _review(post_id: int, approve: bool, reason: str, category: str | None = None) -> None:
    with user_errors(), _session() as session:
        actor = _principal(session)
        services.review(session, actor, post_id, approve=approve, reason=reason, category=category)
        if not approve:
            console.print(f"post {post_id} rejected")
            return
        post = services.visible_post(session, actor, post_id)
        progress, state = services.chain_progress(session, post), post.state
    current = progress["current_step"]
    if current is None:
        console.print(f"post {post_id} approved ({state})")
    else:
        step = progress["steps"][current]
        console.print(f"post {post_id}: your step approved; next: {step['name']} (a {step['role']})")


@post_app.command("approve")
def post_approve(post_id: int, reason: str = typer.Option("", "--reason")) -> None:
    """Approve the current step of a post's review chain, as yourself (never your own post)."""
    _review(post_id, True, reason)


@post_app.command("reject")
def post_reject(
    post_id: int,
    reason: str = typer.Option(..., "--reason"),
    category: str = typer.Option(None, "--category", help="Which harm screening missed (kept as feedback)."),
) -> None:
    """Reject a post (a reason is required; the author is told)."""
    _review(post_id, False, reason, category)


@post_app.command("override")
def post_override(
    post_id: int, reason: str = typer.Option(..., "--reason", help="What screening got wrong (required).")
) -> None:
    """Override an automatic reject (a false positive): the post goes to review, this counts as its first step."""
    with user_errors(), _session() as session:
        actor = _principal(session)
        services.override(session, actor, post_id, reason=reason)
        state = services.visible_post(session, actor, post_id).state
    console.print(f"post {post_id} overridden ({state})")


@post_app.command("retry")
def post_retry(post_id: int) -> None:
    """Retry only the deliveries that failed."""

    with user_errors(), _session() as session:
        failed = services.retry_post(session, _principal(session), post_id)
        console.print(f"retrying {len(failed)} deliveries of post {post_id}")


@post_app.command("retract")
def post_retract(post_id: int) -> None:
    """Retract a post from every platform, or what is left of it (run it again); reports per account."""
    actor = _signed_in()
    with user_errors():
        lines = retract.retract_post(actor, post_id)
    left = [line for line in lines if line["outcome"] not in ("retracted", "cancelled", "already")]
    title = f"post {post_id} retracted" if not left else f"post {post_id} partially retracted: {len(left)} copies left"
    table = Table("delivery", "account", "kind", "outcome", "detail", title=title)
    for line in lines:
        table.add_row(str(line["delivery"]), line["account"], line["kind"], line["outcome"], line["detail"])
    console.print(table)
    if any(line["outcome"] == "retracting" for line in lines):
        console.print(
            "retrying in the background; `matrix post show` follows it, `matrix post retract` again retries now"
        )


@post_app.command("rescreen")
def post_rescreen(
    days: int | None = typer.Option(None, "--days", help="Published this many days back (MATRIX_RESCREEN_DAYS)."),
    org: str | None = typer.Option(None, "--org", help="That organisation's subtree only (id or name)."),
) -> None:
    """Screen the live posts again now, whatever rules they were screened with (admins); in the background on
    the screening queue, new screenings first. Prints how many were queued."""
    with user_errors(), _session() as session:
        queued = rescreen.request_rescreen(session, _principal(session), days=days, org=org)
    console.print(f"{queued} live posts queued for re-screening")


@post_app.command("flags")
def post_flags(include_closed: bool = typer.Option(False, "--all", help="Closed flags too.")) -> None:
    """Live posts a re-screen flagged (the rules changed since they went out), with the new evidence."""
    with user_errors(), _session() as session:
        rows = rescreen.flag_rows(session, _principal(session), open_only=not include_closed)
    table = Table("flag", "post", "title", "decision", "evidence", "state", title="live posts flagged again")
    for r in rows:
        evidence = "; ".join(f"{h['category']} 「{h['text']}」" for h in r["hits"][:5])
        table.add_row(str(r["id"]), str(r["post"]), escape(r["title"] or ""), r["decision"], escape(evidence),
                      r["state"])  # fmt: skip
    console.print(table)


@post_app.command("flag-retract")
def post_flag_retract(flag_id: int) -> None:
    """Retract a flagged live post from every platform in one step (a reviewer of its organisation)."""
    actor = _signed_in()
    with user_errors():
        post_id, lines = live_flags.retract_flagged(actor, flag_id)
    table = Table("delivery", "account", "kind", "outcome", "detail", title=f"post {post_id} (flag {flag_id})")
    for line in lines:
        table.add_row(str(line["delivery"]), line["account"], line["kind"], line["outcome"], line["detail"])
    console.print(table)


@post_app.command("flag-keep")
def post_flag_keep(flag_id: int, reason: str = typer.Option(..., "--reason", "-r")) -> None:
    """Keep a flagged live post (the new rules are wrong about it): the flag is closed with your reason."""
    with user_errors(), _session() as session:
        flag = rescreen.keep_flag(session, _principal(session), flag_id, reason=reason)
    console.print(f"flag {flag.id} kept: post {flag.post_id} stays live")


@post_app.command("show")
def post_show(post_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """A post's state, screening and per-delivery state, remote URL, attempts and last error."""
    with user_errors(), _session() as session:
        actor = _principal(session)
        info = services.post_detail(session, actor, post_id)
        progress = services.chain_progress(session, services.visible_post(session, actor, post_id))
        org_names = dict(session.execute(select(Organization.id, Organization.name)).all())
    if as_json:
        console.print_json(json.dumps({**info, "review": progress}, ensure_ascii=False))
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
    _print_progress(progress, org_names)
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


def _print_progress(progress: dict[str, Any], org_names: dict[int, str]) -> None:
    """The review chain: each step, who approved it, which one is next."""
    applies = "every post" if progress["always"] else "flagged posts"
    console.print(f"review: {escape(progress['chain'])} (applies to {applies})", highlight=False)
    for step in progress["steps"]:
        where = org_names.get(step["organization_id"], f"organisation {step['organization_id']}")
        if step["approved_by"]:
            done = f"{'overridden' if step['decision'] == 'override' else 'approved'} by {step['approved_by']}"
        elif step["step"] == progress["current_step"]:
            done = "next"
        else:
            done = "waiting"
        console.print(
            f"  {step['step'] + 1}. {escape(step['name'])} ({step['role']} of {escape(where)} or above): {done}",
            highlight=False,
        )


@post_app.command("list")
def post_list(state: str = typer.Option(None, "--state"), limit: int = typer.Option(100, "--limit")) -> None:
    """List posts, newest first."""
    with user_errors(), _session() as session:
        rows = services.post_rows(session, _principal(session), state=state, limit=limit)
    table = Table("id", "state", "title", "updated")
    for p in rows:
        table.add_row(str(p["id"]), p["state"], p["title"] or "", _local(p["updated_at"]))
    console.print(table)


# ------------------------------------------------------------------------------------------ delivery


@delivery_app.command("confirm")
def delivery_confirm(delivery_id: int, url: str = typer.Option(..., "--url")) -> None:
    """Record the URL of an assisted (manual) delivery once an operator has posted it."""
    actor = _signed_in()
    with user_errors():
        d = assisted.confirm_manual(actor, delivery_id, url)
    console.print(f"delivery {d.id} published at {url}")


@delivery_app.command("removed")
def delivery_removed(
    delivery_id: int,
    force: bool = typer.Option(False, "--force", help="Record it although its URL still answers (a removal notice)."),
) -> None:
    """Record that a copy without a retraction API (manual, assisted) was deleted by hand after its post was
    retracted; its URL is checked first where it can be."""
    actor = _signed_in()
    with user_errors():
        d, checked = assisted.confirm_removed(actor, delivery_id, force=force)
    console.print(f"delivery {d.id} recorded as removed ({checked})")


@delivery_app.command("package")
def delivery_package(delivery_id: int, output: Path = typer.Option(..., "--output", "-o")) -> None:
    """Download the ready-to-paste package (ZIP) of an assisted delivery."""
    _writable(output)
    actor = _signed_in()
    with user_errors():
        data = assisted.package_for(actor, delivery_id)
    try:
        output.write_bytes(data)
    except OSError as exc:  # the checks above cannot foresee everything (a full disk, say)
        fail(f"cannot write {output}: {exc.strerror}")
    console.print(f"wrote {output} ({len(data)} bytes)")


@app.command("notifications")
def notifications_cmd(
    all_: bool = typer.Option(False, "--all", help="Read ones too."),
    keep_unread: bool = typer.Option(False, "--keep-unread", help="Do not mark the ones shown as read."),
) -> None:
    """Show your unread notifications (and mark them read)."""
    with user_errors(), _session() as session:
        actor = _principal(session)
        rows = services.notification_rows(session, actor, unread_only=not all_, mark_read=not keep_unread)
    table = Table("when", "kind", "post", "message", title=f"notifications for {actor.name}")
    for n in rows:
        table.add_row(_local(n["created_at"]), n["kind"], str(n["post"] or ""), n["message"])
    console.print(table)


# ------------------------------------------------------------------------------------------ terms


@terms_app.command("add")
def terms_add(
    org: str = typer.Argument(..., help="Organisation name or id."),
    term: str = typer.Argument(...),
    list_: str = typer.Option("deny", "--list", help="deny or allow"),
    category: str = typer.Option("custom", "--category"),
    severity: str = typer.Option("review", "--severity", help="block or review"),
) -> None:
    """Add a term to an organisation's deny- or allow-list (takes effect without a restart)."""

    with user_errors(), _session() as session:
        actor = _principal(session)
        found = services.find_organization(session, org)
        _entry, created = services.add_moderation_term(
            session, actor, found.id, term, list_=list_, category=category, severity=severity
        )
    done = "added" if created else "updated"
    console.print(f"{list_}-list of {org}: {done} {term!r} ({category}, {severity})")


# ------------------------------------------------------------------------------- reviewer feedback


@feedback_app.command("export")
def feedback_export(output: Path = typer.Option(..., "--output", "-o", help="The JSONL file to write.")) -> None:
    """Reviewers' feedback as JSONL for `python -m moderation.train --feedback FILE` (admins)."""
    _writable(output)
    with user_errors(), _session() as session:
        lines = list(services.export_lines(session, _principal(session)))
    output.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    console.print(f"{len(lines)} feedback examples written to {output}")


@feedback_app.command("proposals")
def feedback_proposals() -> None:
    """Terms reviewers overrode often: allow-list proposals (accept or dismiss them)."""
    with user_errors(), _session() as session:
        rows = services.proposals(session, _principal(session))
    table = Table("organisation", "term", "overrides")
    for row in rows:
        table.add_row(str(row["organization_id"]), row["term"], str(row["overrides"]))
    console.print(table if rows else "no proposals")


def _decide(org: str, term: str, accept: bool) -> None:
    with user_errors(), _session() as session:
        services.decide_proposal(session, _principal(session), org, term, accept=accept)
    console.print(f"{term!r}: {'added to the allow-list' if accept else 'dismissed'}")


@feedback_app.command("accept")
def feedback_accept(org: str, term: str) -> None:
    """Accept a proposal: the term joins the organisation's allow-list."""
    _decide(org, term, True)


@feedback_app.command("dismiss")
def feedback_dismiss(org: str, term: str) -> None:
    """Dismiss a proposal: it is not proposed again."""
    _decide(org, term, False)


# ---------------------------------------------------------------------------------------- secrets


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with MATRIX_SECRET_KEY (earlier keys in MATRIX_OLD_SECRET_KEYS).

    Every secret at rest: the accounts' credentials and the monitor's alert channels' secrets (webhook URLs,
    signing secrets, SMTP passwords; report schedules send through those channels). Cached platform tokens
    are left alone: one written with a dropped key reads as a cache miss and is fetched again.
    One transaction: either every secret is re-encrypted or none is (a value no key can decrypt stops it
    with one line naming its row, and nothing is changed). Running it twice is harmless.
    """
    with user_errors(), _session() as session:
        actor = _principal(session)
        services.require(session, actor, "user.manage")  # an admin (of somewhere): the key is the installation's
        accounts = session.scalars(select(Account).order_by(Account.id).with_for_update()).all()
        for account in accounts:
            account.credentials_enc = rotate(account.credentials_enc, f"the credentials of account {account.id}")
        channels = rotate_alert_channel_secrets(session)
        services.audit(session, actor, "secrets.rotate", None, accounts=len(accounts), alert_channels=channels)
    console.print(
        f"re-encrypted the credentials of {len(accounts)} accounts and the secrets of {channels} alert channels "
        "with the current key",
        soft_wrap=True,  # one line, however narrow the terminal
    )


# ------------------------------------------------------------------------------------------- demo


@demo_app.command("seed")
def demo_seed(post: bool = typer.Option(False, "--post", help="Also create and schedule a demo post now.")) -> None:
    """Create the demo organisations, users and sandbox accounts (idempotent). On a database without users it
    creates the demo users and shows their passwords once; otherwise it takes an admin signed in."""
    with user_errors(), _session() as session:
        _admin_unless_no_users(session)
    with user_errors():
        specs = fetch_demo_accounts(get_settings().sandbox_url)
    with user_errors(), _session() as session:
        _admin_unless_no_users(session)
        passwords = seed_people(session)  # first: the demo post is the demo editor's; {} when users exist
        accounts = seed(session, specs, with_post=post)
        count = len(accounts)
    console.print(f"demo data ready: {count} sandbox accounts")
    if passwords:
        _print_demo_people(passwords)


def _print_demo_people(passwords: dict[str, str]) -> None:
    """The demo users' passwords, the one time they are known (only their hashes are kept)."""
    people = Table("user", "role", "password", title="demo users (passwords shown once)")
    roles = {name: f"{role}@{org}" for name, role, org in DEMO_PEOPLE}
    for name, password in passwords.items():
        people.add_row(name, roles.get(name, ""), password)
    console.print(people)
    console.print("sign in with: matrix login --user editor")


def _admin_unless_no_users(session) -> None:
    if services.users_exist(session):
        services.require(session, _principal(session), "user.manage")


# -------------------------------------------------------------------------------------- organisations


@chain_app.command("show")
def chain_show(
    org: str = typer.Argument(..., help="Organisation name or id."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The review chain that applies to an organisation's posts, and where it comes from."""
    with user_errors(), _session() as session:
        info = services.review_chain_of(session, _principal(session), org)
    if as_json:
        console.print_json(json.dumps(info, ensure_ascii=False))
        return
    if info["inherited_from"] is None:
        origin = "the default: no organisation at or above it has one"
    elif info["inherited_from"] == info["organization"]:
        origin = "its own"
    else:
        origin = f"inherited from {info['inherited_from']}"
    console.print(f"review chain of {escape(info['organization'])} ({escape(origin)})", highlight=False)
    _print_chain(info["chain"], "  ")
    for kind, sub in (info["chain"].get("channels") or {}).items():
        console.print(f"  for posts to {escape(kind)}:", highlight=False)
        _print_chain(sub, "    ")


def _print_chain(chain: dict[str, Any], indent: str) -> None:
    applies = "every post" if chain.get("applies") == "always" else "posts screening flagged"
    console.print(f"{indent}applies to {applies}", highlight=False)
    for n, step in enumerate(chain.get("steps") or [], start=1):
        at = step.get("at", "own")
        where = {"own": "the post's organisation", "parent": "its parent", "root": "the top of the tree"}.get(
            at, f"organisation {at}"
        )
        name = step.get("name") or f"第{n}审"
        console.print(f"{indent}{n}. {escape(str(name))}: a {step.get('role', 'reviewer')} of {where} or above",
                      highlight=False)  # fmt: skip


@chain_app.command("set")
def chain_set(
    org: str = typer.Argument(..., help="Organisation name or id."),
    file: Path = typer.Option(None, "--file", "-f", help="The chain as JSON (- for standard input)."),
    clear: bool = typer.Option(False, "--clear", help="Remove the organisation's own chain (its parent's applies)."),
) -> None:
    """Set (or --clear) an organisation's review chain (admins of it)."""
    if clear == (file is not None):
        fail("give either --file CHAIN.json or --clear")
    data: dict[str, Any] | None = None
    if file is not None:
        text = _read_body(file, None)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"{file} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    with user_errors(), _session() as session:
        services.set_review_chain(session, _principal(session), org, data)
    console.print(f"review chain of {escape(org)} {'cleared' if clear else 'set'}", highlight=False)


def _print_aliases(row: dict[str, Any]) -> None:
    aliases = "、".join(row["aliases"]) or "no alias"
    console.print(f"{escape(row['organization'])}: {escape(aliases)}", highlight=False)


@alias_app.command("add")
def alias_add(
    org: str = typer.Argument(..., help="Organisation name or id."),
    alias: str = typer.Argument(..., help="Another name of it, e.g. 省总 for 江苏省总工会."),
) -> None:
    """Give an organisation another name the monitor counts as a mention of it (admins of it)."""
    with user_errors(), _session() as session:
        row = organizations.add_alias(session, _principal(session), org, alias)
    _print_aliases(row)


@alias_app.command("remove")
def alias_remove(
    org: str = typer.Argument(..., help="Organisation name or id."),
    alias: str = typer.Argument(...),
) -> None:
    """Remove an alias of an organisation (admins of it)."""
    with user_errors(), _session() as session:
        row = organizations.remove_alias(session, _principal(session), org, alias)
    _print_aliases(row)


@alias_app.command("list")
def alias_list(
    org: str | None = typer.Argument(None, help="Organisation name or id; default: all those you have a role in."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The aliases of an organisation, or of every organisation in your part of the tree."""
    with user_errors(), _session() as session:
        rows = organizations.alias_rows(session, _principal(session), org)
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        _print_aliases(row)


# ------------------------------------------------------------------------------------------- audit


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the audit trail's hash chain: exit 0 if intact, 1 naming the first row that was changed or removed."""
    with user_errors(), _session() as session:
        services.require(session, _principal(session), "audit.view")
        result = audit_log.verify(session)
    if not result.ok:
        err.print(f"[red]error:[/red] {escape(result.problem)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"audit log intact: {result.rows} rows (head {result.head[:16]}…)")


@audit_app.command("list")
def audit_list(
    user: str = typer.Option(None, "--user", "-u", help="Only what this person did."),
    obj: str = typer.Option(None, "--object", help="TYPE or TYPE:ID, e.g. post:12."),
    action: str = typer.Option(None, "--action", help="e.g. post.approve"),
    since: str = typer.Option(None, "--since", help="From this local time on."),
    until: str = typer.Option(None, "--until", help="Before this local time."),
    limit: int = typer.Option(100, "--limit"),
) -> None:
    """Audit events, newest first (admins)."""
    object_type, object_id = None, None
    if obj:
        object_type, sep, raw_id = obj.partition(":")
        if not object_type or (sep and not raw_id.isdigit()):
            fail(f"--object {obj!r}: give TYPE or TYPE:ID, e.g. post:12")
        object_id = int(raw_id) if sep else None
    with user_errors():
        start = parse_local(since, allow_past=True) if since else None
        end = parse_local(until, allow_past=True) if until else None
        with _session() as session:
            services.require(session, _principal(session), "audit.view")
            rows = audit_log.events(session, actor=user, object_type=object_type, object_id=object_id,
                                    action=action, since=start, until=end, limit=limit)  # fmt: skip
            shown = [
                (str(e.id), format_local(e.at), e.actor, e.source, e.action,
                 f"{e.object_type}:{e.object_id}" if e.object_id is not None else e.object_type,
                 json.dumps(e.detail, ensure_ascii=False, sort_keys=True))
                for e in rows
            ]  # fmt: skip
    table = Table("id", "when", "who", "from", "action", "object", "detail", title="audit events")
    table.columns[6].overflow = "fold"
    for row in shown:
        table.add_row(*(escape(x) for x in row))
    console.print(table)


@app.callback()
def _configure() -> None:
    # A setting that does not validate (MATRIX_DELIVERY_BATCH=0) is one line and exit 2 for every command,
    # `matrix up` and `matrix worker` included, not a traceback from wherever the settings are first read.
    try:
        get_settings()
    except ValidationError as exc:
        fail(settings_problem(exc))
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
