"""The secret key: refused outside the embedded default when missing, public or short; a key file inside it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from typer.testing import CliRunner

from core import crypto
from core.errors import ConfigError
from core.settings import Settings, reset_settings

ROOT = Path(__file__).resolve().parents[2]
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
LONG_KEY = "k" * crypto.MIN_SECRET_KEY_CHARS


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No MATRIX_* key or URL from the caller's environment; a fresh data directory."""
    for name in ("MATRIX_SECRET_KEY", "MATRIX_OLD_SECRET_KEYS", "MATRIX_DATABASE_URL", "MATRIX_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MATRIX_DATA_DIR", str(tmp_path / "var"))
    reset_settings()
    yield tmp_path / "var"
    reset_settings()


def _settings(data_dir: Path, **kw: str) -> Settings:
    return Settings(data_dir=data_dir, **kw)


# ------------------------------------------------------------------------------- the embedded default


def test_embedded_without_a_key_makes_a_private_random_key_file_once(clean_env: Path) -> None:
    settings = _settings(clean_env)
    assert settings.embedded
    keys = crypto.secret_keys(settings)
    path = clean_env / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys[0] == path.read_text().strip() and len(keys[0]) >= 60
    assert keys[-1] == crypto.DEFAULT_SECRET_KEY  # decryption only: it is never first, so never encrypts
    assert crypto.secret_keys(settings)[0] == keys[0]  # read again, not made again


def test_processes_starting_together_agree_on_one_key_file(clean_env: Path) -> None:
    path = clean_env / "secret.key"
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(crypto._file_key(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and seen[0] == path.read_text().strip()
    assert [p.name for p in clean_env.iterdir()] == ["secret.key"]  # no temporary file left behind


def test_credentials_from_before_the_key_file_still_decrypt_and_rotate_to_it(clean_env: Path) -> None:
    # An installation from before the key file wrote with the public default (HKDF-derived).
    old = Fernet(crypto.derive_key(crypto.DEFAULT_SECRET_KEY)).encrypt(json.dumps({"secret": "s"}).encode())
    assert crypto.decrypt_credentials(old) == {"secret": "s"}
    rotated = crypto.rotate(old)
    file_key = (clean_env / "secret.key").read_text().strip()
    assert Fernet(crypto.derive_key(file_key)).decrypt(rotated) == b'{"secret": "s"}'
    new = crypto.encrypt_credentials({"n": 1})
    with pytest.raises(InvalidToken):  # new rows are not written with the public default
        Fernet(crypto.derive_key(crypto.DEFAULT_SECRET_KEY)).decrypt(new)


def test_an_explicit_key_on_the_embedded_default_is_used_as_given(clean_env: Path) -> None:
    assert crypto.secret_keys(_settings(clean_env, secret_key="short-test-key")) == ["short-test-key"]
    assert not (clean_env / "secret.key").exists()


# ---------------------------------------------------------------------------- outside the embedded default


@pytest.mark.parametrize(
    ("urls", "key", "problem"),
    [
        ({"database_url": PG_URL, "broker_url": REDIS_URL}, "", "is not set"),
        ({"database_url": PG_URL, "broker_url": REDIS_URL}, crypto.DEFAULT_SECRET_KEY, "is the public default"),
        ({"database_url": PG_URL, "broker_url": REDIS_URL}, "x" * 31, "is shorter than 32 characters"),
        ({"broker_url": REDIS_URL}, "", "is not set"),  # SQLite database, Redis broker: not the demo
        ({"database_url": PG_URL}, "test-secret", "is shorter"),  # PostgreSQL, SQLite broker: not the demo
    ],
)
def test_a_missing_public_or_short_key_is_refused_in_one_line(clean_env, urls, key, problem) -> None:
    settings = _settings(clean_env, secret_key=key, **urls)
    assert not settings.embedded
    with pytest.raises(ConfigError, match=f"^MATRIX_SECRET_KEY {problem}") as info:
        crypto.check_secret_key(settings)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError):  # and no code path encrypts with it either
        crypto.fernet(settings)
    assert not (clean_env / "secret.key").exists()


def test_a_long_key_is_accepted_outside_the_embedded_default(clean_env: Path) -> None:
    settings = _settings(clean_env, secret_key=LONG_KEY, old_secret_keys="dev-only-change-me", broker_url=REDIS_URL)
    assert crypto.secret_keys(settings) == [LONG_KEY, crypto.DEFAULT_SECRET_KEY]  # an old key may be anything


@pytest.mark.parametrize("command", ["api", "worker", "beat", "up"])
def test_the_service_commands_refuse_to_start(clean_env, monkeypatch, command) -> None:
    from publisher.interfaces.cli import app

    monkeypatch.setenv("MATRIX_DATABASE_URL", PG_URL)
    monkeypatch.setenv("MATRIX_BROKER_URL", REDIS_URL)
    monkeypatch.setenv("MATRIX_SECRET_KEY", "test-secret")
    reset_settings()
    result = CliRunner().invoke(app, [command])
    assert result.exit_code == 2, result.output
    assert "MATRIX_SECRET_KEY is shorter than 32 characters" in result.output


def test_the_api_refuses_to_start_when_served_directly(clean_env, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from publisher.interfaces.api import app

    monkeypatch.setenv("MATRIX_DATABASE_URL", PG_URL)
    monkeypatch.setenv("MATRIX_BROKER_URL", REDIS_URL)
    reset_settings()
    with pytest.raises(ConfigError, match="MATRIX_SECRET_KEY is not set"):
        with TestClient(app):
            pass


def test_a_celery_worker_started_directly_refuses_to_start(clean_env: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATRIX_")}
    env.update(MATRIX_DATA_DIR=str(clean_env), MATRIX_BROKER_URL=REDIS_URL, MATRIX_SECRET_KEY=crypto.DEFAULT_SECRET_KEY)
    run = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--without-mingle", "--without-gossip"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "MATRIX_SECRET_KEY is the public default" in run.stderr + run.stdout
    assert "ready." not in run.stderr + run.stdout
