"""Fixtures shared by the test folders (``unit/``, ``contract/``, ``scenarios/``); their helpers are in ``support/``.

- ``env``: a fresh embedded installation (SQLite under ``tmp_path``), migrated, settings read again.
- ``screener_config`` / ``rules_only``: moderation's process-wide configuration restored after the test;
  ``rules_only`` screens with the lexicon and PII rules alone (no transformer classifier).
- ``sandbox_server``: all platform sandboxes (``channels.sandbox.create_app``) on one real server per session.
- ``wx_server`` / ``wx``: the WeChat sandbox on a server of its own, and a control client with the test app
  registered (helpers: :mod:`tests.support.wechat`).

Fixtures that serve one folder only live in that folder's ``conftest.py`` (the running stack: ``scenarios/``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

import moderation
from channels.sandbox import create_app
from channels.sandbox.server import RunningServer, serve_in_thread
from core.settings import reset_settings
from moderation import ModerationConfig
from publisher import migrate
from publisher.services import people
from tests.support import wechat
from tests.support.contract import SandboxControl

# The test sandboxes listen on loopback at free ports: the outbound guard lets loopback through for the
# suite (as MATRIX_OUTBOUND_ALLOW lets an installation reach its sandboxes); the guard's own tests give
# their policies explicitly.
os.environ.setdefault("MATRIX_OUTBOUND_ALLOW", "127.0.0.0/8,::1")

# Argon2 at its production cost takes ~0.1-0.4 s a hash; the suite makes hundreds of users. The tests check
# what sign-in does, not what it costs, so they hash with the smallest parameters (still Argon2id).
people._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

# ------------------------------------------------------------------------------------ installation


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh embedded installation, migrated: SQLite and the SQLite broker under a new data dir.

    Screening is rules-only (no model load), the secret key is fixed (``first-key-of-this-test``) and no
    old key, database or broker URL leaks in from the environment. Yields the data directory.
    """
    data_dir = tmp_path / "var"
    monkeypatch.setenv("MATRIX_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MATRIX_MODERATION_CLASSIFIER", "0")
    monkeypatch.setenv("MATRIX_SECRET_KEY", "first-key-of-this-test")
    for name in ("MATRIX_OLD_SECRET_KEYS", "MATRIX_DATABASE_URL", "MATRIX_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    migrate.upgrade()
    yield data_dir
    reset_settings()


# -------------------------------------------------------------------------------------- moderation


@pytest.fixture()
def screener_config() -> Iterator[None]:
    """Moderation's process default configuration, put back as it was after the test."""
    before = moderation.current_config()
    yield
    moderation.configure(before)


@pytest.fixture()
def rules_only(screener_config: None) -> None:
    """Screen with the rules alone (lexicon, PII), as ``MATRIX_MODERATION_CLASSIFIER=0`` does."""
    moderation.configure(ModerationConfig(classifier=False))


# --------------------------------------------------------------------------------------- sandboxes


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[RunningServer]:
    """All platform sandboxes, mounted as ``matrix up`` serves them, on one real server (a free port)."""
    server = serve_in_thread(create_app())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def wx_server() -> Iterator[RunningServer]:
    """The WeChat sandbox at ``/wechat`` (and an image host at ``/files``) on a server of its own."""
    server = wechat.start_server()
    yield server
    server.stop()


@pytest.fixture()
def wx(wx_server: RunningServer) -> Iterator[SandboxControl]:
    """The WeChat sandbox, reset, with the test app (``wechat.APPID``/``wechat.SECRET``) registered."""
    control = SandboxControl(wx_server.url, "/wechat")
    control.reset()
    control.add_account(appid=wechat.APPID, secret=wechat.SECRET, name="contract test account")
    yield control
    control.close()
