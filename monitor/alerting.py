"""Alerts on robots and e-mail: queued once per alert and channel, sent by the monitor's workers part by part.

::

    store.Batch.alert (in the poll's write transaction)
        └── queue_sends: one AlertSend per channel covering the rule (unique: alert, channel), the message
            rendered and fixed; after commit, monitor.send_alert(send_id) is enqueued
    monitor.send_alert (no transaction over the network)
        claim the send (a lease: two workers never send one)                        short transaction
        quiet hours now? → held until they end (beat's monitor.send_due brings it back)
        for each part not yet sent: the robot's slot from the shared limiter, POST,   no transaction
            then parts_sent += 1                                                     short transaction
        ok → sent; retry → again after Retry-After or backoff; config → the channel is broken and its owner
        told (core.notify); refused → this send failed alone

A part is sent at least once: if a worker dies between a robot's "ok" and ``parts_sent``, the retry sends that
part again — never a part skipped, never the parts out of order. Secrets (webhook URLs with their keys, signing
secrets, SMTP passwords) are encrypted with :mod:`core.crypto` and appear in no message, log line or read model:
errors name the platform's host only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import smtplib
import socket
import ssl
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from email.message import EmailMessage
from typing import Any

import httpx
import redis
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import ratelimit
from core.clock import format_local, now
from core.crypto import decrypt_credentials, encrypt_credentials
from core.db import after_commit, engine_for, session_scope
from core.errors import ConfigError, InvalidInput
from core.http import OutboundRefused, default_policy, guarded_client
from core.notify import notify
from core.settings import get_settings
from monitor import robots
from monitor.errors import AlertConfigError, AlertError, AlertRefused, AlertRetry
from monitor.models import Alert, AlertChannel, AlertSend, Item, Rule, Sighting, Story
from monitor.queue import MonitorTask, enqueue
from monitor.settings import MonitorSettings, get_monitor_settings
from publisher.services.common import holders

log = logging.getLogger(__name__)

DUE_STATES = ("queued", "held", "retry")
RATE_MARGIN = 0.95  # space a robot's messages 5 % wider than its limit: arrival times jitter
LEASE_S = 300.0  # a claimed send is another worker's after this (longer than any send of all its parts)
SMTP_MAX_BYTES = 10 * 1024 * 1024
JSON_TYPE = "application/json; charset=utf-8"


# ---------------------------------------------------------------------------------------- secrets, hours


def seal(secrets: dict[str, Any]) -> bytes:
    """A channel's secrets, encrypted for storage (the kernel's credential cipher)."""
    return encrypt_credentials(secrets)


def unseal(blob: bytes) -> dict[str, Any]:
    """A channel's secrets, decrypted (a wrong key is a one-line :class:`core.errors.ConfigError`)."""
    return decrypt_credentials(blob, "an alert channel's secrets")


def parse_hhmm(text: str) -> dtime:
    """``"22:00"`` as a time of day; :class:`InvalidInput` for anything else."""
    try:
        hours, minutes = text.strip().split(":")
        return dtime(int(hours), int(minutes))
    except ValueError:
        raise InvalidInput(f"quiet hours are HH:MM, not {text!r}") from None


def quiet_until(t: datetime, start: str | None, end: str | None) -> datetime | None:
    """When the quiet hours ``start``–``end`` (local, may wrap midnight) that contain ``t`` end; None outside."""
    if not start or not end or start == end:
        return None
    tz = get_settings().tz
    local = t.astimezone(tz)
    s, e, cur = parse_hhmm(start), parse_hhmm(end), local.time()
    inside = s <= cur < e if s < e else (cur >= s or cur < e)
    if not inside:
        return None
    ends = local.replace(hour=e.hour, minute=e.minute, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    return ends.astimezone(UTC)


def robot_key(webhook: str) -> str:
    """The limiter key of a robot: its webhook hashed (two channels on one robot share its 20 a minute)."""
    return "monitor-robot:" + hashlib.sha256(webhook.encode()).hexdigest()[:24]


def where(url: str) -> str:
    """A robot's address fit for a message: scheme and host only (keys travel in the query and the path)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "an invalid URL"
    return f"{parsed.scheme}://{parsed.host}{f':{parsed.port}' if parsed.port else ''}"


# ------------------------------------------------------------------------------------------- queueing


def channels_for(session: Session, rule: Rule) -> list[AlertChannel]:
    """Active channels that take ``rule``'s alerts: those naming it, else those of its organisation."""
    chosen = []
    for channel in session.scalars(select(AlertChannel).where(AlertChannel.state == "active")):
        listed = (channel.config or {}).get("rules") or []
        if (listed and rule.id in listed) or (not listed and channel.organization_id == rule.organization_id):
            chosen.append(channel)
    return chosen


def render(session: Session, alert: Alert, settings: MonitorSettings) -> tuple[str, str]:
    """An alert's title and text, as every channel gets it (robots split the text, e-mail sends it whole)."""
    rule = session.get(Rule, alert.rule_id)
    item = session.get(Item, alert.item_id)
    story = session.get(Story, alert.story_id)
    if rule is None or item is None:
        return "舆情预警", alert.message
    sources = session.scalar(
        select(func.count(func.distinct(Sighting.source_id))).where(
            Sighting.item_id.in_(select(Item.id).where(Item.story_id == alert.story_id))
        )
    )
    title = f"舆情预警：{rule.name}"
    text = item.text or ""
    if len(text) > settings.alert_text_chars:
        text = f"{text[: settings.alert_text_chars]}……（全文 {len(item.text)} 字，见链接）"
    lines = [
        f"【{title}】",
        f"标题：{item.title}" if item.title else "",
        f"链接：{item.link}" if item.link else "",
        f"时间：{format_local(item.published_at or item.fetched_at)}",
        f"报道：{story.item_count if story else 1} 篇，{sources or 1} 个来源",
        "",
        text,
    ]
    return title, "\n".join(line for i, line in enumerate(lines) if line or i == 5)


def queue_sends(session: Session, alert: Alert, rule: Rule, settings: MonitorSettings | None = None) -> int:
    """One send per channel covering ``rule`` (in the caller's transaction); each enqueued after commit."""
    settings = settings or get_monitor_settings()
    channels = channels_for(session, rule)
    if not channels:
        return 0
    title, body = render(session, alert, settings)
    queued = 0
    for channel in channels:
        send = AlertSend(alert_id=alert.id, channel_id=channel.id, title=title[:200], body=body, next_at=now())
        try:
            with session.begin_nested():
                session.add(send)
        except IntegrityError:  # this alert is on this channel already
            continue
        after_commit(session, enqueue, MonitorTask.SEND_ALERT, send.id)
        queued += 1
    return queued


def due_sends(session: Session, *, limit: int = 200) -> list[int]:
    """Beat: sends that are due (queued, past quiet hours, retry time come) and not claimed by a worker."""
    t = now()
    q = (
        select(AlertSend.id)
        .where(AlertSend.state.in_(DUE_STATES), AlertSend.next_at <= t)
        .where(AlertSend.claimed_until.is_(None) | (AlertSend.claimed_until < t))
        .order_by(AlertSend.next_at, AlertSend.id)
        .limit(limit)
    )
    return list(session.scalars(q))


# -------------------------------------------------------------------------------------------- sending


@functools.lru_cache(maxsize=4)
def _limiter_for(broker_url: str, database_url: str, max_wait_s: float) -> ratelimit.SharedLimiter:
    if broker_url.startswith(("redis://", "rediss://")):
        return ratelimit.RedisLimiter(redis.Redis.from_url(broker_url), max_wait_s=max_wait_s)
    return ratelimit.SqlLimiter(engine_for(database_url), max_wait_s=max_wait_s)


def robot_limiter(settings: MonitorSettings) -> ratelimit.SharedLimiter:
    """The process's shared limiter (Redis where the broker is Redis, else the database), as the fetcher's."""
    core = get_settings()
    return _limiter_for(core.broker_url, core.database_url, settings.alert_max_wait_s)


def make_client(settings: MonitorSettings) -> httpx.Client:
    """The guarded client robots are called with: a webhook is a URL a user typed (sandboxes: the allow-list)."""
    return guarded_client(timeout=settings.alert_timeout_s)


def _claim(session: Session, send_id: int, t: datetime) -> bool:
    claimed = session.execute(
        update(AlertSend)
        .where(AlertSend.id == send_id, AlertSend.state.in_(DUE_STATES), AlertSend.next_at <= t)
        .where(AlertSend.claimed_until.is_(None) | (AlertSend.claimed_until < t))
        .values(claimed_until=t + timedelta(seconds=LEASE_S))
    )
    return claimed.rowcount == 1  # type: ignore[attr-defined]


def deliver(
    send_id: int,
    *,
    settings: MonitorSettings | None = None,
    client: httpx.Client | None = None,
    limiter: ratelimit.SharedLimiter | None = None,
) -> str:
    """Send one alert on one channel (the remaining parts, in order); returns the send's state afterwards,
    or ``skipped`` when it is not due or another worker has it."""
    settings = settings or get_monitor_settings()
    t = now()
    with session_scope() as session:
        if not _claim(session, send_id, t):
            return "skipped"
        send = session.get(AlertSend, send_id)
        channel = session.get(AlertChannel, send.channel_id) if send else None
        if send is None:
            return "skipped"
        if channel is None or channel.state != "active":
            send.state, send.claimed_until = "failed", None
            send.last_error = f"channel {send.channel_id} is {channel.state if channel else 'removed'}"
            return send.state
        held = quiet_until(t, channel.quiet_start, channel.quiet_end)
        if held is not None:
            send.state, send.next_at, send.claimed_until = "held", held, None
            return send.state
        kind = robots.kind_of(channel.kind)
        config = dict(channel.config or {})
        parts = kind.parts(send.body, str(config.get("keyword") or ""))
        send.parts_total = len(parts)
        send.attempts += 1
        start, title, body, channel_id = send.parts_sent, send.title, send.body, channel.id
        try:
            secrets = unseal(channel.secrets)
        except ConfigError as exc:  # the secret key changed: no retry can help until the key is back
            send.state, send.last_error, send.claimed_until = "failed", str(exc), None
            return send.state
    try:
        if kind is robots.Email:
            if start == 0:
                send_email(secrets, config, title, body, settings)
                _record_part(send_id, 1)
        else:
            _send_parts(send_id, kind, secrets, parts, start, title, settings, client, limiter)
    except AlertRetry as exc:
        return _reschedule(send_id, exc, settings)
    except AlertConfigError as exc:
        return _broken(send_id, channel_id, exc)
    except AlertRefused as exc:
        return _finish(send_id, "failed", str(exc))
    return _finish(send_id, "sent", None)


def _send_parts(
    send_id: int,
    kind: type[robots.RobotKind],
    secrets: dict[str, Any],
    parts: list[str],
    start: int,
    title: str,
    settings: MonitorSettings,
    client: httpx.Client | None,
    limiter: ratelimit.SharedLimiter | None,
) -> None:
    webhook = str(secrets.get("webhook", ""))
    limiter = limiter or robot_limiter(settings)
    own_client = client is None
    client = client or make_client(settings)
    try:
        for index in range(start, len(parts)):
            try:
                limiter.acquire(robot_key(webhook), kind.rate_per_minute / 60 * RATE_MARGIN)
            except ratelimit.RateLimitExceeded as exc:
                raise AlertRetry(
                    f"{kind.label}: this robot's next slot is later", retry_after=exc.retry_after
                ) from None
            post_part(client, kind, webhook, parts[index], title=title, secret=str(secrets.get("secret", "")))
            _record_part(send_id, index + 1)
    finally:
        if own_client:
            client.close()


def post_part(
    client: httpx.Client, kind: type[robots.RobotKind], webhook: str, part: str, *, title: str, secret: str = ""
) -> None:
    """POST one part to a robot and judge the answer: returns on success, raises an :class:`AlertError`."""
    request = kind.build(webhook, part, title=title, secret=secret, now_s=now().timestamp())
    # our own encoding (UTF-8, not \\u escapes): the limits were measured on these bytes
    content = json.dumps(request.body, ensure_ascii=False).encode()
    try:
        response = client.post(
            request.url, content=content, headers={"Content-Type": "application/json; charset=utf-8"}
        )
    except OutboundRefused as exc:
        raise AlertConfigError(f"{kind.label} at {where(webhook)}: {exc}") from None
    except httpx.TimeoutException as exc:
        raise AlertRetry(f"{kind.label} at {where(webhook)} timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise AlertRetry(f"{kind.label} at {where(webhook)} could not be reached ({type(exc).__name__})") from None
    try:
        answer_body = response.json()
    except ValueError:
        answer_body = None
    answer = kind.judge(response.status_code, answer_body)
    reason = f"{kind.label} at {where(webhook)}: {answer.message}"
    if answer.outcome == robots.OK:
        return
    if answer.outcome == robots.RETRY:
        raise AlertRetry(reason, retry_after=answer.retry_after)
    if answer.outcome == robots.CONFIG:
        raise AlertConfigError(reason)
    raise AlertRefused(reason)


def _check_smtp_host(host: str, port: int) -> None:
    """The SMTP host is typed by a user too: the outbound guard's policy judges its addresses."""
    policy = default_policy()
    if policy.host_allowed(host, port):
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except OSError as exc:
        raise AlertRetry(f"SMTP host {host} cannot be resolved ({exc.__class__.__name__})") from None
    for address in addresses:
        try:
            policy.check_address(str(address))
        except OutboundRefused as exc:
            raise AlertConfigError(f"SMTP host {host}: {exc}") from None


def send_email(
    secrets: dict[str, Any], config: dict[str, Any], title: str, text: str, settings: MonitorSettings
) -> None:
    """Send the alert as one text/plain message through the channel's SMTP server (stdlib ``smtplib``)."""
    message = EmailMessage()
    message["Subject"] = title
    message["From"] = str(config.get("from", ""))
    message["To"] = ", ".join(config.get("to", []))
    message.set_content(text)
    send_message(secrets, config, message, settings, what="the message")


def send_message(
    secrets: dict[str, Any],
    config: dict[str, Any],
    message: EmailMessage,
    settings: MonitorSettings,
    *,
    what: str,
) -> None:
    """Send a built message through the channel's SMTP server, its answers mapped to retry-later, refused or
    fix-the-configuration (``what`` names the message in the size refusal). The alert's and the report's mail."""
    host, port = str(config.get("smtp_host", "")), int(config.get("smtp_port") or 25)
    _check_smtp_host(host, port)
    if len(message.as_bytes()) > SMTP_MAX_BYTES:
        raise AlertRefused(f"{what} is over {SMTP_MAX_BYTES:,} bytes")
    security = str(config.get("security", "starttls"))
    try:
        smtp_class = smtplib.SMTP_SSL if security == "ssl" else smtplib.SMTP
        with smtp_class(host, port, timeout=settings.alert_timeout_s) as smtp:
            if security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if config.get("username"):
                smtp.login(str(config["username"]), str(secrets.get("password", "")))
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise AlertConfigError(f"SMTP {host}: login refused ({exc.smtp_code})") from None
    except smtplib.SMTPRecipientsRefused:
        raise AlertConfigError(f"SMTP {host}: every recipient refused") from None
    except smtplib.SMTPNotSupportedError as exc:
        raise AlertConfigError(f"SMTP {host}: {exc}") from None
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise AlertRetry(f"SMTP {host}: temporary failure {exc.smtp_code}") from None
        raise AlertRefused(f"SMTP {host}: refused {exc.smtp_code}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise AlertRetry(f"SMTP {host}:{port} could not be reached ({type(exc).__name__})") from None


# ------------------------------------------------------------------------------------------- outcomes


def _record_part(send_id: int, parts_sent: int) -> None:
    with session_scope() as session:
        send = session.get(AlertSend, send_id)
        if send is not None:
            send.parts_sent = max(send.parts_sent, parts_sent)


def _finish(send_id: int, state: str, error: str | None) -> str:
    with session_scope() as session:
        send = session.get(AlertSend, send_id)
        if send is None:
            return "skipped"
        send.state, send.last_error, send.claimed_until = state, error, None
        if state == "sent":
            send.sent_at = now()
        return state


def backoff_s(attempts: int, rng: random.Random | None = None) -> float:
    """Delay before try ``attempts + 1``: 30 s doubled per try, at most an hour, with jitter (half to all)."""
    base = min(3600.0, 30.0 * 2 ** max(0, attempts - 1))
    return base / 2 + (rng or random).uniform(0, base / 2)


def _reschedule(send_id: int, error: AlertRetry, settings: MonitorSettings) -> str:
    with session_scope() as session:
        send = session.get(AlertSend, send_id)
        if send is None:
            return "skipped"
        send.last_error, send.claimed_until = str(error)[:2000], None
        if send.attempts >= settings.alert_max_attempts:
            send.state = "failed"
            return send.state
        delay = error.retry_after if error.retry_after is not None else backoff_s(send.attempts)
        send.state, send.next_at = "retry", now() + timedelta(seconds=max(1.0, delay))
        log.info("alert send %s: retry in %.0f s: %s", send_id, delay, error)
        return send.state


def _broken(send_id: int, channel_id: int, error: AlertError) -> str:
    """The platform refused the channel's configuration: mark it broken and tell its owner (once)."""
    with session_scope() as session:
        send = session.get(AlertSend, send_id)
        channel = session.get(AlertChannel, channel_id)
        if send is not None:
            send.state, send.last_error, send.claimed_until = "failed", str(error)[:2000], None
        if channel is not None and channel.state == "active":
            channel.state, channel.state_reason = "broken", str(error)[:2000]
            recipients = holders(session, ["monitor", "admin"], channel.organization_id)
            if channel.created_by is not None:
                recipients = [channel.created_by, *recipients]
            notify(
                session,
                recipients or [None],
                "monitor.alert_channel_broken",
                f"alert channel {channel.id} ({channel.name}) needs fixing, nothing more is sent to it: {error}",
            )
        log.warning("alert channel %s broken: %s", channel_id, error)
        return "failed"
