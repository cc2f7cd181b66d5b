"""Alerts on robots and e-mail, for real: the pipeline queues them, :func:`monitor.alerting.deliver` sends them to
the robot sandbox (its signatures, limits and error codes) and the SMTP sink, through the guarded client."""

from __future__ import annotations

import json
import logging
import random
import threading
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from channels.sandbox.server import serve_in_thread
from core import ratelimit
from core.clock import now
from core.db import engine_for, session_scope
from core.errors import InvalidInput
from core.notify import Notification
from core.settings import get_settings, reset_settings
from monitor import alert_channels, alerting, robot_sandbox, services
from monitor import robots as kinds
from monitor.errors import AlertConfigError, AlertRefused, AlertRetry
from monitor.models import AlertChannel, AlertSend
from monitor.pipeline import poll_source
from monitor.settings import MonitorSettings
from monitor.smtp_sandbox import SmtpSink
from publisher.interfaces.api import app
from publisher.interfaces.cli import app as cli_app
from tests.monitor.conftest import Feeds, Robots
from tests.support.people import CITY, Person

LONG = "".join(f"第{n}段：某服装厂拖欠工资三个月，一百多名工人讨薪无果，当地总工会已介入。\n" for n in range(300))


def _channel(person: Person, **kw) -> int:
    with session_scope() as s:
        return alert_channels.add_channel(s, person.principal, organization=CITY, **kw).id


def _alert(person: Person, feeds: Feeds, settings: MonitorSettings, text: str, *, routes: int = 1, tag: str = "a"):
    """A rule matching an item that ``routes`` sources carry, polled: the sends it queued."""
    with session_scope() as s:
        rule = services.add_rule(s, person.principal, name=f"欠薪{tag}", query_text="欠薪 OR 拖欠", organization=CITY)
        rule_id = rule.id
    names = [f"{tag}/repost/{n}" for n in range(routes)]
    feeds.call("repost", routes=names, title=f"某厂欠薪{tag}", text=text, edits=False)
    for name in names:
        with session_scope() as s:
            sid = services.add_source(s, person.principal, url=feeds.url(name), organization=CITY).id
        assert poll_source(sid, settings=settings).status == "new"
    return rule_id, _sends()


def _sends() -> list[AlertSend]:
    with session_scope() as s:
        return list(s.scalars(select(AlertSend).order_by(AlertSend.id)))


def _send(send_id: int) -> AlertSend:
    with session_scope() as s:
        return s.get(AlertSend, send_id)


def _due_now(send_id: int) -> None:
    with session_scope() as s:
        s.get(AlertSend, send_id).next_at = now() - timedelta(seconds=1)


class FakeClock:
    """Seconds that move only when someone sleeps: the limiter and the robot sandbox share it."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0
        self.lock = threading.Lock()

    def time(self) -> float:
        with self.lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.t += max(0.0, seconds)


def _fast_limiter() -> ratelimit.SqlLimiter:
    """The kernel's SQL limiter on the installation's database, sleeping on a fake clock (no real waits)."""
    clock = FakeClock()
    return ratelimit.SqlLimiter(engine_for(get_settings().database_url), clock=clock.time, sleep=clock.sleep)


# ---------------------------------------------------------------------------------------------- pure


def test_split_never_cuts_and_every_part_fits_its_robot() -> None:
    rng = random.Random(5)
    pieces = ["短行\n", "😀" * 3000, '引号"和\\反斜杠\t' * 400 + "\n", "。" * 10, "\r\n", "x" * 25_000, LONG]
    text = "".join(rng.choice(pieces) for _ in range(24))
    for kind, limit in ((kinds.WeCom, 4096), (kinds.DingTalk, 20_000), (kinds.Feishu, 20 * 1024)):
        for keyword in ("", "舆情"):
            parts = kind.parts(text, keyword)
            assert len(parts) > 1
            prefix = f"{keyword} " if keyword else ""
            assert "".join(kinds.strip_part_header(p, prefix) for p in parts) == text
            assert all(p.startswith(f"{prefix}[{i}/{len(parts)}] ") for i, p in enumerate(parts, 1))
            for part in parts:
                request = kind.build("https://robot.example/hook/x", part, title="t", secret="s", now_s=1.8e9)
                body = json.dumps(request.body, ensure_ascii=False).encode()
                measured = len(body) if kind is kinds.Feishu else len(part.encode())
                assert measured <= limit, (kind.kind, measured)
    assert kinds.WeCom.parts("短消息") == ["短消息"]  # one part: no header
    assert kinds.DingTalk.parts("含舆情的消息", "舆情") == ["含舆情的消息"]  # the keyword is there already


def test_every_code_the_sandbox_answers_is_mapped() -> None:
    sandbox_codes = {
        kinds.WeCom: {93000: "config", 40008: "refused", 40058: "refused", 45009: "retry"},
        kinds.DingTalk: {300001: "config", 310000: "config", 460101: "refused", 130101: "retry"},
        kinds.Feishu: {19001: "config", 9499: "refused", 19021: "config", 19024: "config", 11232: "retry"},
    }
    for kind, codes in sandbox_codes.items():
        for code, outcome in codes.items():
            assert kind.errors[code][0] == outcome, (kind.kind, code)
        assert {o for o, _ in kind.errors.values()} <= {"retry", "config", "refused"}
    assert kinds.Feishu.judge(200, {"code": 0, "msg": "success"}).outcome == "ok"
    assert kinds.WeCom.judge(502, None).outcome == "retry"


# ----------------------------------------------------------------------------------- the real path


def test_an_alert_reaches_each_robot_once_split_in_order_and_signed(
    people: dict[str, Person], feeds: Feeds, robots: Robots, settings: MonitorSettings
) -> None:
    city = people["city"]
    settings = settings.model_copy(update={"alert_text_chars": 20_000})
    wecom = _channel(city, kind="wecom", name="企微", webhook=robots.add("wecom", "wk-1"))
    ding = _channel(city, kind="dingtalk", name="钉钉", webhook=robots.add("dingtalk", "dt-1", secret="SECdt",
                    keywords=["舆情"]), secret="SECdt", keyword="舆情")  # fmt: skip
    fei = _channel(city, kind="feishu", name="飞书", webhook=robots.add("feishu", "fs-1", secret="fs-secret"),
                   secret="fs-secret")  # fmt: skip
    _rule_id, sends = _alert(city, feeds, settings, LONG, routes=5)
    assert sorted(s.channel_id for s in sends) == sorted([wecom, ding, fei])  # once per robot, for five reposts
    limiter = _fast_limiter()
    for send in sends:
        assert alerting.deliver(send.id, settings=settings, limiter=limiter) == "sent"
        assert alerting.deliver(send.id, settings=settings, limiter=limiter) == "skipped"  # sent is sent
    for kind, token, keyword in (("wecom", "wk-1", ""), ("dingtalk", "dt-1", "舆情 "), ("feishu", "fs-1", "")):
        got = robots.messages(kind, token)
        send = next(s for s in _sends() if s.channel_id == {"wecom": wecom, "dingtalk": ding, "feishu": fei}[kind])
        assert got["refused"] == [] and len(got["accepted"]) == send.parts_total == send.parts_sent
        assert send.parts_total >= 2, kind  # the text is long enough to be split on every robot
        contents = [m["content"] for m in got["accepted"]]
        assert [kinds.strip_part_header(c, keyword) for c in contents] != contents
        assert "".join(kinds.strip_part_header(c, keyword) for c in contents) == send.body
        assert "某厂欠薪a" in send.body and "拖欠工资" in send.body
    # a sixth source reposting it later alerts nobody again
    feeds.call("repost", routes=["a/repost/late"], title="某厂欠薪a", text=LONG, edits=False)
    with session_scope() as s:
        late = services.add_source(s, city.principal, url=feeds.url("a/repost/late"), organization=CITY).id
    poll_source(late, settings=settings)
    assert len(_sends()) == 3


def test_twenty_a_minute_holds_through_the_shared_limiter(
    people: dict[str, Person], feeds: Feeds, settings: MonitorSettings
) -> None:
    clock = FakeClock()
    server = serve_in_thread(robot_sandbox.create_app(clock=clock.time))
    try:
        control = Robots(server)
        settings = settings.model_copy(update={"alert_text_chars": 20_000})
        _channel(people["city"], kind="wecom", name="企微", webhook=control.add("wecom", "rate"))
        _alert(people["city"], feeds, settings, LONG * 3, tag="a")  # two long alerts: 30 parts for one robot
        _alert(people["city"], feeds, settings, LONG * 3, tag="b")
        limiter = ratelimit.SqlLimiter(
            engine_for(get_settings().database_url), clock=clock.time, sleep=clock.sleep, max_wait_s=10
        )
        sends = _sends()
        assert [alerting.deliver(s.id, settings=settings, limiter=limiter) for s in sends] == ["sent", "sent"]
        got = control.messages("wecom", "rate")
        times = [m["at"] for m in got["accepted"]]
        assert len(times) == sum(_send(s.id).parts_total for s in sends) > 20 and got["refused"] == []
        assert max(sum(1 for u in times if t - 60 < u <= t) for t in times) <= 20
        # without the limiter the sandbox refuses the 21st of a minute, and that is a retry, not a failure
        hook = control.add("wecom", "norate")
        with httpx.Client() as client:
            for _ in range(20):
                alerting.post_part(client, kinds.WeCom, hook, "消息", title="t")
            with pytest.raises(AlertRetry, match="45009"):
                alerting.post_part(client, kinds.WeCom, hook, "消息", title="t")
    finally:
        server.stop()


def test_error_codes_retry_later_or_break_the_channel_and_tell_its_owner(
    people: dict[str, Person], feeds: Feeds, robots: Robots, settings: MonitorSettings, caplog
) -> None:
    city = people["city"]
    hook = robots.add("wecom", "secret-key-123")
    wecom = _channel(city, kind="wecom", name="企微", webhook=hook)
    ding = _channel(city, kind="dingtalk", name="钉钉", webhook=robots.add("dingtalk", "dt", secret="right"),
                    secret="wrong")  # fmt: skip
    fei = _channel(city, kind="feishu", name="飞书", webhook=robots.add("feishu", "fs", secret="fsk"), secret="fsk")
    _rule, sends = _alert(city, feeds, settings, "某厂欠薪，工人讨薪。")
    by_channel = {s.channel_id: s.id for s in sends}
    limiter = _fast_limiter()
    robots.call("faults", kind="wecom", token="secret-key-123", code=45009)
    caplog.set_level(logging.INFO)
    assert alerting.deliver(by_channel[wecom], settings=settings, limiter=limiter) == "retry"
    retry = _send(by_channel[wecom])
    assert retry.next_at >= now() + timedelta(seconds=50) and "rate limited" in retry.last_error
    _due_now(by_channel[wecom])
    assert alerting.deliver(by_channel[wecom], settings=settings, limiter=limiter) == "sent"
    # DingTalk with the wrong secret: the signature is refused, the channel needs fixing
    assert alerting.deliver(by_channel[ding], settings=settings, limiter=limiter) == "failed"
    # Feishu: the sandbox's clock two hours on, the signature's timestamp is stale
    robots.call("clock", advance_s=7200)
    assert alerting.deliver(by_channel[fei], settings=settings, limiter=limiter) == "failed"
    with session_scope() as s:
        states = {c.id: (c.state, c.state_reason) for c in s.scalars(select(AlertChannel))}
        told = [n.message for n in s.scalars(select(Notification).where(Notification.kind.like("%channel_broken")))]
    assert states[wecom][0] == "active"
    assert states[ding][0] == "broken" and "310000" in states[ding][1] and "sign not match" in states[ding][1]
    assert states[fei][0] == "broken" and "19021" in states[fei][1]
    assert len(set(told)) == 2 and all("needs fixing" in m for m in told)  # each to its creator and monitors
    assert "secret-key-123" not in caplog.text + retry.last_error + "".join(told)
    with pytest.raises(AlertRefused):
        with httpx.Client() as client:
            alerting.post_part(client, kinds.Feishu, robots.add("feishu", "big"), "字" * 8000, title="t")
    with pytest.raises(AlertConfigError, match="invalid webhook"):
        with httpx.Client() as client:
            alerting.post_part(client, kinds.WeCom, robots.webhook("wecom", "nobody"), "x", title="t")


def test_quiet_hours_hold_an_alert_and_send_it_after(
    people: dict[str, Person], feeds: Feeds, robots: Robots, settings: MonitorSettings, monkeypatch
) -> None:
    local = now().astimezone(get_settings().tz)
    start, end = (local - timedelta(hours=1)).strftime("%H:%M"), (local + timedelta(hours=1)).strftime("%H:%M")
    _channel(people["city"], kind="wecom", name="企微", webhook=robots.add("wecom", "q"), quiet_start=start,
             quiet_end=end)  # fmt: skip
    _rule, (send,) = _alert(people["city"], feeds, settings, "某厂欠薪。")
    assert alerting.deliver(send.id, settings=settings, limiter=_fast_limiter()) == "held"
    held = _send(send.id)
    assert held.next_at > now() + timedelta(minutes=50) and robots.messages("wecom", "q")["accepted"] == []
    with session_scope() as s:
        assert alerting.due_sends(s) == []  # held: not due before the quiet hours end
    monkeypatch.setenv("MATRIX_CLOCK_OFFSET_S", str(2 * 3600 + 60))  # the clock past the quiet hours
    reset_settings()
    with session_scope() as s:
        assert alerting.due_sends(s) == [send.id]
    assert alerting.deliver(send.id, settings=settings, limiter=_fast_limiter()) == "sent"
    assert len(robots.messages("wecom", "q")["accepted"]) == 1


def test_email_through_smtp_and_a_refused_login_breaks_the_channel(
    people: dict[str, Person], feeds: Feeds, settings: MonitorSettings, smtp_sink: SmtpSink, monkeypatch
) -> None:
    common = {"kind": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp_sink.port, "smtp_security": "none",
              "smtp_username": "alerts", "mail_from": "monitor@union.example",
              "mail_to": ["duty@union.example"]}  # fmt: skip
    good = _channel(people["city"], name="值班邮箱", smtp_password="smtp-pass-of-test", **common)
    bad = _channel(people["city"], name="旧邮箱", smtp_password="wrong", **common)
    _rule, sends = _alert(people["city"], feeds, settings, LONG)
    by_channel = {s.channel_id: s.id for s in sends}
    assert alerting.deliver(by_channel[good], settings=settings) == "sent"
    (mail,) = smtp_sink.messages
    assert mail["Subject"] == "舆情预警：欠薪a" and smtp_sink.recipients == [["duty@union.example"]]
    assert mail.get_content().rstrip("\n") == _send(by_channel[good]).body.rstrip("\n")  # whole, not split
    assert alerting.deliver(by_channel[bad], settings=settings) == "failed"
    with session_scope() as s:
        assert s.get(AlertChannel, bad).state == "broken"
        assert "login refused" in (s.get(AlertChannel, bad).state_reason or "")


def test_channels_api_cli_and_alert_log_never_show_secrets(
    people: dict[str, Person], feeds: Feeds, robots: Robots, settings: MonitorSettings, monkeypatch
) -> None:
    client = TestClient(app)
    h = people["city"].headers
    hook = robots.add("dingtalk", "tok-SECRET-1", secret="SEC-signing")
    body = {"kind": "dingtalk", "name": "钉钉", "webhook": hook, "secret": "SEC-signing", "keyword": "舆情",
            "quiet_start": "23:00", "quiet_end": "06:00", "organization": CITY}  # fmt: skip
    r = client.post("/monitor/alert-channels", json=body, headers=h)
    assert r.status_code == 201, r.text
    channel_id = r.json()["id"]
    listed = client.get("/monitor/alert-channels", headers=h)
    assert listed.json()[0]["quiet_hours"] == "23:00-06:00" and listed.json()[0]["target"].startswith("http://")
    assert "tok-SECRET-1" not in listed.text + r.text and "SEC-signing" not in listed.text + r.text
    with session_scope() as s:
        blob = s.get(AlertChannel, channel_id).secrets
    assert b"tok-SECRET-1" not in blob and alerting.unseal(blob)["secret"] == "SEC-signing"
    # errors: one line each
    bad = client.post("/monitor/alert-channels", json={**body, "kind": "qq"}, headers=h)
    assert bad.status_code == 422 and "kind is one of dingtalk, email, feishu, wecom" in bad.json()["detail"]
    dup = client.post("/monitor/alert-channels", json=body, headers=h)
    assert dup.status_code == 409
    half = client.post("/monitor/alert-channels", json={**body, "name": "x", "quiet_end": None}, headers=h)
    assert half.status_code == 422 and "quiet hours need a start and an end" in half.json()["detail"]
    editor = client.post("/monitor/alert-channels", json=body, headers=people["editor"].headers)
    assert editor.status_code == 403
    assert client.get("/monitor/alert-channels", headers=people["neighbour"].headers).json() == []
    # the alert log: each alert with its send on each channel
    _rule, (send,) = _alert(people["city"], feeds, settings, "某厂欠薪。")
    alerting.deliver(send.id, settings=settings, limiter=_fast_limiter())
    log = client.get("/monitor/alerts", headers=h).json()
    assert log[0]["sends"][0]["state"] in ("sent", "held") and log[0]["sends"][0]["channel"] == "钉钉"
    assert client.get("/monitor/alerts", headers=people["neighbour"].headers).json() == []
    # the CLI: list, add (secret asked for, not on the command line), remove
    runner = CliRunner()
    monkeypatch.setenv("MATRIX_TOKEN", people["city"].token)
    done = runner.invoke(cli_app, ["monitor", "alerts", "channel", "list"])
    assert done.exit_code == 0 and "钉钉" in done.output and "tok-SECRET-1" not in done.output
    hook = robots.add("feishu", "f")
    args = ["monitor", "alerts", "channel", "add", "feishu", "飞书", "--org", CITY, "--webhook", hook]
    done = runner.invoke(cli_app, [*args, "--secret", "--quiet", "22:00-07:00"], input="fs-key\n")
    assert done.exit_code == 0 and "alert channel" in done.output, done.output
    assert runner.invoke(cli_app, ["monitor", "alerts", "list"]).exit_code == 0
    assert runner.invoke(cli_app, ["monitor", "alerts", "channel", "remove", str(channel_id)]).exit_code == 0
    gone = runner.invoke(cli_app, ["monitor", "alerts", "channel", "remove", str(channel_id)])
    assert gone.exit_code == 2 and "not found" in gone.output
    with pytest.raises(InvalidInput, match="HH:MM"):
        alerting.parse_hhmm("25")


def test_quiet_hours_wrap_midnight() -> None:
    tz = get_settings().tz
    at = datetime(2026, 12, 2, 23, 30, tzinfo=tz)
    assert alerting.quiet_until(at, "22:00", "07:00") == datetime(2026, 12, 3, 7, 0, tzinfo=tz)
    assert alerting.quiet_until(at.replace(hour=6), "22:00", "07:00") == datetime(2026, 12, 2, 7, 0, tzinfo=tz)
    assert alerting.quiet_until(at.replace(hour=12), "22:00", "07:00") is None
    assert alerting.quiet_until(at.replace(hour=12), "09:00", "18:00") == datetime(2026, 12, 2, 18, 0, tzinfo=tz)
    assert alerting.quiet_until(at, None, None) is None
