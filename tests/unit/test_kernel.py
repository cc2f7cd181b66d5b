"""The kernel on its own: secrets (HKDF keys, rotation), the broker's task names, notifications, settings."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from typer.testing import CliRunner

from core import crypto
from core.broker import Task, celery_config
from core.errors import ConfigError
from core.settings import Settings, get_settings, reset_settings

ROOT = Path(__file__).resolve().parents[2]


def test_keys_come_from_hkdf_and_differ_by_purpose() -> None:
    key = crypto.derive_key("some secret")
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert key != crypto.derive_key("some secret", b"another purpose")
    assert key != base64.urlsafe_b64encode(hashlib.sha256(b"some secret").digest())  # not the bare hash any more


def test_credentials_round_trip_and_a_wrong_key_is_one_clear_line(env, monkeypatch) -> None:
    blob = crypto.encrypt_credentials({"app_password": "abcd 1234"})
    assert b"abcd" not in blob
    assert crypto.decrypt_credentials(blob) == {"app_password": "abcd 1234"}
    monkeypatch.setenv("MATRIX_SECRET_KEY", "another-key")
    reset_settings()
    with pytest.raises(ConfigError, match="MATRIX_SECRET_KEY changed"):
        crypto.decrypt_credentials(blob)


def test_rows_written_before_hkdf_still_decrypt(env) -> None:
    """Installations before HKDF derived the key as sha256(secret): their rows stay readable, and rotate."""
    legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"first-key-of-this-test").digest()))
    blob = legacy.encrypt(json.dumps({"secret": "s"}).encode())
    assert crypto.decrypt_credentials(blob) == {"secret": "s"}
    rotated = crypto.rotate(blob)
    assert Fernet(crypto.derive_key("first-key-of-this-test")).decrypt(rotated) == b'{"secret": "s"}'


def test_matrix_secrets_rotate_re_encrypts_every_credential_and_loses_none(env, monkeypatch) -> None:
    from core.db import session_scope
    from publisher import services
    from publisher.domain.models import Account
    from publisher.interfaces.cli import app
    from tests.support.people import DISTRICT, PROVINCE, SYSTEM, make_user

    with session_scope() as s:
        for i in range(3):
            services.add_account(
                s, SYSTEM, kind="manual", name=f"手动账号{i}", credentials={"n": i}, organization=DISTRICT
            )
    monkeypatch.setenv("MATRIX_TOKEN", make_user("admin", ("admin", PROVINCE)).token)  # rotating takes an admin
    # The operator sets a new key and keeps the old one acceptable until the rotation has run.
    monkeypatch.setenv("MATRIX_SECRET_KEY", "second-key-of-this-test")
    monkeypatch.setenv("MATRIX_OLD_SECRET_KEYS", "first-key-of-this-test")
    reset_settings()
    result = CliRunner().invoke(app, ["secrets", "rotate"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted the credentials of 3 accounts" in result.output
    monkeypatch.delenv("MATRIX_OLD_SECRET_KEYS")  # the old key is gone now: everything must still decrypt
    reset_settings()
    with session_scope() as s:
        accounts = s.scalars(select(Account).order_by(Account.id)).all()
        assert [crypto.decrypt_credentials(a.credentials_enc) for a in accounts] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_rotate_with_no_key_that_fits_changes_nothing_and_says_so(env, monkeypatch) -> None:
    from core.db import session_scope
    from publisher import services
    from publisher.domain.models import Account
    from publisher.interfaces.cli import app
    from tests.support.people import DISTRICT, PROVINCE, SYSTEM, make_user

    with session_scope() as s:
        services.add_account(s, SYSTEM, kind="manual", name="手动", credentials={"n": 1}, organization=DISTRICT)
        before = s.scalar(select(Account.credentials_enc))
    monkeypatch.setenv("MATRIX_TOKEN", make_user("admin", ("admin", PROVINCE)).token)  # rotating takes an admin
    monkeypatch.setenv("MATRIX_SECRET_KEY", "a-key-that-never-wrote-anything")
    reset_settings()
    result = CliRunner().invoke(app, ["secrets", "rotate"])
    assert result.exit_code == 2 and "cannot be decrypted with any configured key" in result.output
    with session_scope() as s:
        assert s.scalar(select(Account.credentials_enc)) == before


def test_every_task_name_has_a_task_and_every_beat_entry_names_one() -> None:
    importlib.import_module("workers.tasks")  # registers the tasks (a worker loads it through `include`)
    importlib.import_module("workers.rescreen_tasks")
    from workers.app import celery_app

    registered = set(celery_app.tasks)
    assert {t.value for t in Task} <= registered
    schedule = celery_config(Settings(broker_url="redis://127.0.0.1:6379/0"))["beat_schedule"]
    assert {entry["task"] for entry in schedule.values()} <= {t.value for t in Task}


def test_the_kernel_imports_none_of_our_packages() -> None:
    code = (
        "import sys, core.settings, core.db, core.clock, core.errors, core.broker, core.crypto, core.notify;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'publisher', 'channels', 'moderation', 'workers'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_notifications_are_read_through_one_read_model(env) -> None:
    from core.db import session_scope
    from core.notify import notify
    from publisher import services
    from tests.support.people import PROVINCE, make_user

    monitor = make_user("monitor", ("monitor", PROVINCE)).principal
    with session_scope() as s:
        # one per person, even if named twice
        notify(s, [monitor.user_id, monitor.user_id], "alert", "舆情预警：一条新的负面报道")
    with session_scope() as s:
        rows = services.notification_rows(s, monitor, mark_read=True)
        assert [r["message"] for r in rows] == ["舆情预警：一条新的负面报道"]
    with session_scope() as s:
        assert services.notification_rows(s, monitor) == []
        assert len(services.notification_rows(s, monitor, unread_only=False)) == 1


def test_settings_are_read_again_after_a_reset(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MATRIX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MATRIX_QUEUE", "one")
    reset_settings()
    assert get_settings().queue == "one"
    monkeypatch.setenv("MATRIX_QUEUE", "two")
    assert get_settings().queue == "one"  # cached: read once per process
    reset_settings()
    assert get_settings().queue == "two"
    reset_settings()


def test_demo_seeding_asks_the_running_sandboxes_for_their_accounts(env, sandbox_server) -> None:
    """Production code never imports the sandboxes: `matrix up` reads their demo accounts over HTTP."""
    from core.db import session_scope
    from publisher.domain.models import Account, Post
    from publisher.services.demo import fetch_demo_accounts, seed

    url = sandbox_server.url
    specs = fetch_demo_accounts(url)
    assert {s["kind"] for s in specs} >= {"website", "wechat", "weibo", "toutiao"}
    assert all("{sandbox}" not in json.dumps(s["config"]) for s in specs)
    with session_scope() as s:
        made = seed(s, specs, with_post=True)
    with session_scope() as s:
        assert s.scalar(select(Account).where(Account.id == made[0].id)) is not None
        assert len(s.scalars(select(Account)).all()) == len(specs)
        assert s.scalars(select(Post)).one().state == "screening"
    with session_scope() as s:  # idempotent
        assert len(seed(s, specs)) == len(specs)
        assert len(s.scalars(select(Account)).all()) == len(specs)


def test_demo_seeding_without_sandboxes_is_one_clear_line() -> None:
    from publisher.services.demo import fetch_demo_accounts

    with pytest.raises(ConfigError, match=r"cannot read the demo accounts from the sandboxes at http://127\.0\.0\.1:9"):
        fetch_demo_accounts("http://127.0.0.1:9", timeout=2)
