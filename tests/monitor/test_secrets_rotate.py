"""`matrix secrets rotate` covers the monitor's secrets too: alert channels keep working once the old key is gone.

A DingTalk robot (webhook with its token, signing secret) and an e-mail channel (SMTP password) are written with
the fixture's key; the operator moves to a new key, rotates, drops the old key, and the alerts still go out
through the robot sandbox (which checks DingTalk's signature) and the SMTP sink (which checks the password).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from typer.testing import CliRunner

from core import crypto
from core.audit import AuditEvent
from core.db import session_scope
from core.settings import reset_settings
from monitor import alert_channels, alerting, services
from monitor.models import AlertChannel, AlertSend
from monitor.pipeline import poll_source
from monitor.settings import MonitorSettings
from monitor.smtp_sandbox import SmtpSink
from publisher import services as publisher_services
from publisher.domain.models import Account
from publisher.interfaces.cli import app as cli_app
from tests.monitor.conftest import Feeds, Robots
from tests.support.people import CITY, DISTRICT, PROVINCE, SYSTEM, Person, make_user
from tests.support.stack import migrated_pg_installation

# Both 32+ characters: on PostgreSQL (outside the embedded default) a shorter current key is refused.
OLD_KEY = "first-key-of-this-rotation-test-is-long"  # what every secret below is written with
NEW_KEY = "second-key-of-this-rotation-test-is-long"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def backend(request: pytest.FixtureRequest, env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The installation of ``env`` on each backend, its key :data:`OLD_KEY`: the rotation locks the accounts'
    and the alert channels' rows (FOR UPDATE on PostgreSQL) and must roll both back alike."""
    monkeypatch.setenv("MATRIX_SECRET_KEY", OLD_KEY)
    reset_settings()
    if request.param == "postgresql":
        with migrated_pg_installation(monkeypatch):
            yield request.param
    else:
        yield request.param


def _install(people: dict[str, Person], robots: Robots, smtp_sink: SmtpSink, monkeypatch) -> dict[str, int]:
    """An account, a signed DingTalk robot and an SMTP channel, all encrypted with the old key; an admin signed in."""
    city = people["city"]
    with session_scope() as s:
        account = publisher_services.add_account(
            s, SYSTEM, kind="manual", name="手动账号", credentials={"app_password": "pw-1"}, organization=DISTRICT
        )
        hook = robots.add("dingtalk", "dt-rotate", secret="SECrotate", keywords=["舆情"])
        ding = alert_channels.add_channel(
            s, city.principal, organization=CITY, kind="dingtalk", name="钉钉", webhook=hook, secret="SECrotate",
            keyword="舆情",
        )  # fmt: skip
        mail = alert_channels.add_channel(
            s, city.principal, organization=CITY, kind="email", name="值班邮箱", smtp_host="127.0.0.1",
            smtp_port=smtp_sink.port, smtp_security="none", smtp_username="alerts",
            smtp_password="smtp-pass-of-test", mail_from="monitor@union.example", mail_to=["duty@union.example"],
        )  # fmt: skip
        ids = {"account": account.id, "dingtalk": ding.id, "email": mail.id}
    monkeypatch.setenv("MATRIX_TOKEN", make_user("admin", ("admin", PROVINCE)).token)  # rotating takes an admin
    return ids


def _new_key(monkeypatch, *, keep_old: bool) -> None:
    """The operator's key change: the new key, with the old one still accepted for decryption or already dropped."""
    monkeypatch.setenv("MATRIX_SECRET_KEY", NEW_KEY)
    if keep_old:
        monkeypatch.setenv("MATRIX_OLD_SECRET_KEYS", OLD_KEY)
    else:
        monkeypatch.delenv("MATRIX_OLD_SECRET_KEYS", raising=False)
    reset_settings()


def _deliver_an_alert(person: Person, feeds: Feeds, settings: MonitorSettings) -> dict[int, str]:
    """A rule matching a polled item, its sends delivered: each channel's send state."""
    with session_scope() as s:
        services.add_rule(s, person.principal, name="欠薪", query_text="欠薪 OR 拖欠", organization=CITY)
    feeds.call("repost", routes=["rot/repost/0"], title="某厂欠薪", text="某服装厂拖欠工资三个月。", edits=False)
    with session_scope() as s:
        source = services.add_source(s, person.principal, url=feeds.url("rot/repost/0"), organization=CITY).id
    assert poll_source(source, settings=settings).status == "new"
    with session_scope() as s:
        sends = [(send.id, send.channel_id) for send in s.scalars(select(AlertSend).order_by(AlertSend.id))]
    return {channel: alerting.deliver(send, settings=settings) for send, channel in sends}


def _blobs(ids: dict[str, int]) -> dict[str, bytes]:
    with session_scope() as s:
        return {
            "account": s.get(Account, ids["account"]).credentials_enc,
            "dingtalk": s.get(AlertChannel, ids["dingtalk"]).secrets,
            "email": s.get(AlertChannel, ids["email"]).secrets,
        }


def _rotations() -> list[dict]:
    with session_scope() as s:
        return [e.detail for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "secrets.rotate"))]


def test_rotate_re_encrypts_alert_channels_and_they_still_send_without_the_old_key(
    backend: str,
    people: dict[str, Person],
    feeds: Feeds,
    robots: Robots,
    smtp_sink: SmtpSink,
    settings: MonitorSettings,
    monkeypatch,
) -> None:
    ids = _install(people, robots, smtp_sink, monkeypatch)
    _new_key(monkeypatch, keep_old=True)
    runner = CliRunner()
    for _ in range(2):  # safe to run twice: the second run re-encrypts with the same key and loses nothing
        done = runner.invoke(cli_app, ["secrets", "rotate"], terminal_width=60)
        assert done.exit_code == 0, done.output
        assert done.output == (
            "re-encrypted the credentials of 1 accounts and the secrets of 2 alert channels with the current key\n"
        )  # one line, counts per kind, even on a narrow terminal
    assert _rotations() == [{"accounts": 1, "alert_channels": 2}] * 2
    _new_key(monkeypatch, keep_old=False)
    old = Fernet(crypto.derive_key(OLD_KEY))
    for what, blob in _blobs(ids).items():
        with pytest.raises(InvalidToken):  # really re-encrypted, not merely still readable through the old key
            old.decrypt(blob)
        assert crypto.decrypt_credentials(blob), what
    assert alerting.unseal(_blobs(ids)["dingtalk"])["secret"] == "SECrotate"
    # the proof that counts: the alert goes out, signed with the secret, and the SMTP login takes the password
    assert _deliver_an_alert(people["city"], feeds, settings) == {ids["dingtalk"]: "sent", ids["email"]: "sent"}
    got = robots.messages("dingtalk", "dt-rotate")
    assert got["refused"] == [] and len(got["accepted"]) == 1 and "某厂欠薪" in got["accepted"][0]["content"]
    assert len(smtp_sink.messages) == 1 and smtp_sink.messages[0]["Subject"] == "舆情预警：欠薪"


def test_without_the_rotation_dropping_the_old_key_breaks_the_alerts(
    backend: str,
    people: dict[str, Person],
    feeds: Feeds,
    robots: Robots,
    smtp_sink: SmtpSink,
    settings: MonitorSettings,
    monkeypatch,
) -> None:
    """What the rotation prevents: the same channels, the key changed and the old one dropped, nothing is sent."""
    ids = _install(people, robots, smtp_sink, monkeypatch)
    _new_key(monkeypatch, keep_old=False)
    assert _deliver_an_alert(people["city"], feeds, settings) == {ids["dingtalk"]: "failed", ids["email"]: "failed"}
    assert robots.messages("dingtalk", "dt-rotate")["accepted"] == [] and smtp_sink.messages == []
    with session_scope() as s:
        errors = {send.last_error for send in s.scalars(select(AlertSend))}
    assert len(errors) == 1 and "cannot decrypt" in errors.pop()


@pytest.mark.parametrize("bad", ["account", "dingtalk"])
def test_a_value_no_key_decrypts_stops_the_rotation_naming_its_row_and_changes_nothing(
    backend: str, bad: str, people: dict[str, Person], robots: Robots, smtp_sink: SmtpSink, monkeypatch
) -> None:
    ids = _install(people, robots, smtp_sink, monkeypatch)
    stray = Fernet(crypto.derive_key("a-key-nobody-configured")).encrypt(json.dumps({"secret": "x"}).encode())
    with session_scope() as s:
        if bad == "account":
            s.get(Account, ids["account"]).credentials_enc = stray
        else:
            s.get(AlertChannel, ids["dingtalk"]).secrets = stray
    before = _blobs(ids)
    _new_key(monkeypatch, keep_old=True)
    done = CliRunner().invoke(cli_app, ["secrets", "rotate"], terminal_width=60)
    assert done.exit_code == 2
    what = f"account {ids['account']}" if bad == "account" else f"alert channel {ids['dingtalk']}"
    assert done.output.startswith(f"error: the {'credentials' if bad == 'account' else 'secrets'} of {what} ")
    assert "cannot be decrypted with any configured key" in done.output and "MATRIX_OLD_SECRET_KEYS" in done.output
    assert done.output.count("\n") == 1 and "Traceback" not in done.output
    # all or nothing: the rows rotated before the bad one (the account, for a bad channel) are rolled back too
    assert _blobs(ids) == before and _rotations() == []
