"""A real running system for scenario tests: sandboxes on a socket, a Celery worker and beat as processes.

Two backends: ``embedded`` (SQLite + the SQLite broker, the default install) and ``services`` (PostgreSQL +
Redis, production). Service tests are skipped when the servers are unreachable, unless
``MATRIX_TEST_REQUIRE_SERVICES=1`` (CI), which turns that into a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("MATRIX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MATRIX_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parents[2]
# The organisation the scenario accounts belong to, and the editor of it who writes and schedules the posts.
UNION = "test union"
EDITOR = "editor"

if TYPE_CHECKING:
    from tests.support.people import Person


def services_required() -> bool:
    return os.environ.get("MATRIX_TEST_REQUIRE_SERVICES") == "1"


def require_services() -> None:
    """Skip (or, in CI, fail) when PostgreSQL or Redis is unreachable."""
    problems = []
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        problems.append(f"Redis at {REDIS_URL}: {exc}")
    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        problems.append(f"PostgreSQL at {PG_ADMIN_URL}: {exc.__class__.__name__}")
    if problems:
        if services_required():
            pytest.fail("services required but unreachable: " + "; ".join(problems))
        pytest.skip("services unreachable: " + "; ".join(problems))


def create_pg_database() -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL database for one test module; returns its URL and a drop function."""
    name = f"mm_test_{uuid.uuid4().hex[:10]}"
    # pre-ping: the chaos run restarts PostgreSQL between the create and the drop, which would find the pooled
    # connection dead
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        from core.db import engine_for

        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def pg_database_or_skip() -> tuple[str, Callable[[], None]]:
    """:func:`create_pg_database`, or skip the test (fail it where CI requires the services) when PostgreSQL is
    unreachable."""
    try:
        return create_pg_database()
    except sa.exc.OperationalError as exc:
        if services_required():
            pytest.fail(f"PostgreSQL required but unreachable: {exc.orig}")
        pytest.skip("PostgreSQL unreachable")


@contextmanager
def migrated_pg_installation(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The configured installation moved onto a fresh PostgreSQL database, migrated, for the block (its URL);
    the settings reset and the database dropped after it."""
    from core.settings import reset_settings
    from publisher import migrate

    url, drop = pg_database_or_skip()
    monkeypatch.setenv("MATRIX_DATABASE_URL", url)
    reset_settings()
    migrate.upgrade()
    try:
        yield url
    finally:
        reset_settings()
        drop()


class Stack:
    """Environment, sandbox, worker and beat for one backend."""

    def __init__(self, backend: str, tmp: Path, extra_env: dict[str, str] | None = None, concurrency: int = 2) -> None:
        self.backend, self.tmp, self.concurrency = backend, tmp, concurrency
        self.procs: dict[str, subprocess.Popen] = {}
        self._drop_db: Callable[[], None] | None = None
        self.env: dict[str, str] = {}
        self.extra_env = extra_env or {}
        self._editor: Person | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Stack:
        from channels.sandbox import create_app
        from channels.sandbox.server import serve_in_thread

        self.sandbox = serve_in_thread(create_app())
        env = {
            "MATRIX_DATA_DIR": str(self.tmp / "var"),
            "MATRIX_QUEUE": f"mm-test-{uuid.uuid4().hex[:8]}",
            "MATRIX_SANDBOX_HOST": self.sandbox.host,
            "MATRIX_SANDBOX_PORT": str(self.sandbox.port),
            "MATRIX_OUTBOUND_ALLOW": f"{self.sandbox.host}:{self.sandbox.port}",
            "MATRIX_DISPATCH_INTERVAL_S": "1",
            "MATRIX_RECONCILE_INTERVAL_S": "1",
            "MATRIX_STUCK_AFTER_S": "8",
            "MATRIX_REQUEUE_AFTER_S": "5",
            "MATRIX_RETRY_BASE_S": "0.5",
            "MATRIX_HTTP_TIMEOUT_S": "5",
            "MATRIX_MODERATION_CLASSIFIER": "0",
            "MATRIX_SECRET_KEY": "test-secret-key-at-least-32-characters-long",
        }
        if self.backend == "services":
            url, self._drop_db = create_pg_database()
            env["MATRIX_DATABASE_URL"] = url
            env["MATRIX_BROKER_URL"] = REDIS_URL
        env.update(self.extra_env)
        self.env = env
        self._saved_env = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        self.refresh_settings()
        from publisher import migrate

        migrate.upgrade()
        self._editor = self._make_editor()
        self.start_worker()
        self.start_process("beat", ["beat", "--loglevel", "warning"])
        return self

    def refresh_settings(self) -> None:
        from core.settings import reset_settings

        reset_settings()

    def start_process(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # closed when the process ends
        proc = subprocess.Popen(
            [sys.executable, "-m", "publisher.interfaces.cli", *args],
            cwd=REPO,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a test can SIGKILL the worker and its children
        )
        self.procs[name] = proc
        return proc

    def start_worker(self, timeout: float = 60, *, name: str = "worker", args: list[str] | None = None) -> None:
        """Start a worker (default: one of every queue, ``-c concurrency``; ``args``: another shape, such as
        ``["worker", "--kind", "delivery", "-c", "16"]``, under ``name``) and wait until it is ready."""
        log_path = self.tmp / f"{name}.log"
        start_size = log_path.stat().st_size if log_path.exists() else 0
        self.start_process(name, args or ["worker", "-c", str(self.concurrency), "--loglevel", "info"])
        deadline = time.time() + timeout
        while time.time() < deadline:
            if log_path.exists() and b"ready." in log_path.read_bytes()[start_size:]:
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError("worker exited:\n" + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        raise RuntimeError("worker not ready:\n" + log_path.read_text(errors="replace")[-3000:])

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool processes, as a crashed machine would."""
        proc = self.procs.pop("worker")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def restart_processes(self, **env: str) -> None:
        """Stop worker and beat, change their environment (and this process's), start them again."""
        for name in ("worker", "beat"):
            proc = self.procs.pop(name, None)
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGQUIT)  # Celery's cold shutdown: no waiting for the pool
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:  # a warm shutdown that hangs: the DB state survives a kill
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        self.env.update(env)
        os.environ.update(env)
        self.refresh_settings()
        self.start_worker()
        self.start_process("beat", ["beat", "--loglevel", "warning"])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.sandbox.stop()
        if self._drop_db:
            self._drop_db()
        for key in self.env:  # the environment as it was before this stack (the suite sets some keys too)
            if self._saved_env.get(key) is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = self._saved_env[key]
        self.refresh_settings()

    def logs(self, limit: int = 4000) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-limit:] for p in sorted(self.tmp.glob("*.log"))
        )

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _make_editor() -> Person:
        from core.db import session_scope
        from publisher import services
        from tests.support.people import make_user

        with session_scope() as s:
            services.ensure_organization(s, UNION)
        return make_user(EDITOR, ("editor", UNION))

    @property
    def editor(self) -> Person:
        """The editor of :data:`UNION` (user ``editor``): the author of the posts :meth:`publish` makes."""
        assert self._editor is not None, "the stack is not started"
        return self._editor

    def sandbox_call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = httpx.request(method, self.sandbox.url + path, timeout=10, **kwargs)
        r.raise_for_status()
        return r.json()

    def website_account(self, site: str) -> int:
        """Register a site on the WordPress sandbox and the matching account on our side; returns its id."""
        password = "abcd efgh ijkl mnop qrst uvwx"
        self.sandbox_call(
            "POST", "/wp/_sandbox/accounts", json={"site": site, "username": "editor", "app_password": password}
        )
        from core.db import session_scope
        from publisher import services

        with session_scope() as s:
            account = services.add_account(
                s,
                services.SYSTEM,
                kind="website",
                name=f"site {site}",
                credentials={"username": "editor", "app_password": password},
                config={"base_url": "{sandbox}/wp/" + site},
                organization=UNION,
            )
            s.flush()
            return account.id

    def wp_posts(self, site: str) -> list[dict[str, Any]]:
        state = self.sandbox_call("GET", "/wp/_sandbox/state")
        sites = state.get("sites", state)
        return list(sites.get(site, {}).get("posts", []))

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; last={last!r}\n{self.logs()}")

    def post(self, post_id: int) -> dict[str, Any]:
        from core.db import session_scope
        from publisher import services
        from publisher.domain.models import Post

        with session_scope() as s:
            return services.post_summary(s, services.get(s, Post, post_id))

    def publish(
        self,
        accounts: list[int],
        title: str = "职工技能大赛开幕",
        body: str = "本届职工技能大赛共有12个工种。",
        *,
        by: Person | None = None,
    ) -> int:
        """Create, (auto-)approve via the worker's screening, and schedule a post now, as the editor ``by``
        (default: :attr:`editor`, of :data:`UNION`); returns its id."""
        from core.clock import now
        from core.db import session_scope
        from publisher import services

        author = (by or self.editor).principal
        with session_scope() as s:
            post = services.create_post(s, author, title=title, body=body, accounts=accounts)
            services.schedule_post(s, author, post.id, now())
            s.flush()
            return post.id
