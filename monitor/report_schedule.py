"""Daily reports sent at a set time: one schedule per organisation, one send per day and target, through the
alert channels (:mod:`monitor.alert_channels`).

::

    beat: monitor.send_reports
        queue_due: for each schedule whose local time has come today, one ReportSend per target and day
                   (unique: schedule, day, target — a second beat tick or worker adds nothing)    short transaction
        after commit: monitor.send_report(send_id) for each due send
    monitor.send_report → deliver_report
        claim the send (a lease), read the report (the read model, as the system)             short transaction
        render; robots: the summary text and a link to the page, split and rate-limited as alerts;
                e-mail: the HTML page as the body, the PDF attached (none when no CJK font)   no transaction
        record sent / retry (backoff) / failed                                                short transaction

A target is ``channel:<id>`` (a robot or an e-mail channel) or ``emails`` (the schedule's own addresses, sent
through its first e-mail channel's SMTP server). Errors are :mod:`core.errors` (services) and
:mod:`monitor.errors` (sending), one line each; secrets are never in a message or a log line.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import ratelimit
from core.clock import iso_local, now
from core.db import after_commit, session_scope
from core.errors import ConfigError, InvalidInput
from core.settings import get_settings
from monitor import alert_channels, alerting, report, robots
from monitor.errors import AlertConfigError, AlertRefused, AlertRetry
from monitor.models import AlertChannel, ReportSchedule, ReportSend
from monitor.queue import MonitorTask, enqueue
from monitor.services import _org_for
from monitor.settings import MonitorSettings, get_monitor_settings
from publisher.services.common import audit
from publisher.services.people import SYSTEM, Principal, require, visible_orgs

log = logging.getLogger(__name__)

COVERS = ("yesterday", "today")
CHANNELS_MAX = 20
EMAILS_MAX = alert_channels.RECIPIENTS_MAX
DUE_STATES = ("queued", "retry")
LEASE_S = 600.0  # longer than a report's read, render and every part of it on one robot
CATCH_UP = timedelta(hours=12)  # a beat down at the set time still sends within this; later, that day is skipped


# ------------------------------------------------------------------------------------------- schedules


def _hhmm(text: str) -> str:
    try:
        hours, minutes = text.strip().split(":")
        return f"{int(hours):02d}:{int(minutes):02d}" if 0 <= int(hours) < 24 and 0 <= int(minutes) < 60 else ""
    except ValueError:
        return ""


def set_schedule(
    session: Session,
    actor: Principal,
    *,
    at: str,
    organization: int | str | None = None,
    covers: str = "yesterday",
    channels: list[int] | None = None,
    emails: list[str] | None = None,
    enabled: bool = True,
) -> ReportSchedule:
    """Set (or replace) an organisation's report schedule: the local time, the day covered, where it goes."""
    org = _org_for(session, actor, organization, "monitor.manage")
    when = _hhmm(at)
    if not when:
        raise InvalidInput(f"the time is HH:MM (local), not {at.strip()[:20]!r}")
    if covers not in COVERS:
        raise InvalidInput(f"a report covers {' or '.join(COVERS)}, not {covers!r}")
    ids = list(dict.fromkeys(channels or []))
    if not ids or len(ids) > CHANNELS_MAX:
        raise InvalidInput(f"a schedule sends to 1 to {CHANNELS_MAX} alert channels (--channel)")
    found = [alert_channels.find_channel(session, actor, i) for i in ids]
    addresses = list(dict.fromkeys(alert_channels._address(a, "an address") for a in (emails or []) if a.strip()))
    if len(addresses) > EMAILS_MAX:
        raise InvalidInput(f"a schedule names at most {EMAILS_MAX} e-mail addresses")
    if addresses and not any(c.kind == "email" for c in found):
        raise InvalidInput("e-mail addresses are sent through an e-mail channel's SMTP server: name one (--channel)")
    schedule = session.scalar(select(ReportSchedule).where(ReportSchedule.organization_id == org.id))
    if schedule is None:
        schedule = ReportSchedule(organization_id=org.id, created_by=actor.user_id)
        session.add(schedule)
    schedule.at, schedule.covers, schedule.channels, schedule.emails = when, covers, ids, addresses
    schedule.enabled, schedule.updated_at = enabled, now()
    session.flush()
    audit(session, actor, "monitor.report_schedule.set", schedule, organization=org.name, at=when, covers=covers)
    return schedule


def schedule_row(session: Session, schedule: ReportSchedule) -> dict[str, Any]:
    """The read model of a schedule, with its last sends."""
    sends = session.scalars(
        select(ReportSend).where(ReportSend.schedule_id == schedule.id).order_by(ReportSend.id.desc()).limit(10)
    )
    return {
        "id": schedule.id,
        "organization": report.organization_name(session, schedule.organization_id),
        "at": schedule.at,
        "covers": schedule.covers,
        "channels": list(schedule.channels or []),
        "emails": list(schedule.emails or []),
        "enabled": schedule.enabled,
        "sends": [
            {
                "day": s.day,
                "target": s.target,
                "state": s.state,
                "attempts": s.attempts,
                "sent_at": iso_local(s.sent_at),
                "last_error": s.last_error,
            }
            for s in sends
        ],
    }


def schedule_rows(session: Session, actor: Principal) -> list[dict[str, Any]]:
    """The report schedules of the organisations the actor may see."""
    require(session, actor, "monitor.view")
    q = select(ReportSchedule).order_by(ReportSchedule.id)
    allowed = visible_orgs(session, actor, "monitor.view")
    if allowed is not None:
        q = q.where(ReportSchedule.organization_id.in_(allowed))
    return [schedule_row(session, s) for s in session.scalars(q)]


# ----------------------------------------------------------------------------------------------- beat


def _targets(schedule: ReportSchedule) -> list[str]:
    return [f"channel:{c}" for c in schedule.channels or []] + (["emails"] if schedule.emails else [])


def queue_due(session: Session, t: datetime | None = None) -> list[int]:
    """Beat: the sends of every schedule whose time has come today (each once: the unique key), then the ids of
    the sends due now (queued, or a retry whose time has come) that no worker holds; enqueued after commit."""
    t = t or now()
    tz = get_settings().tz
    local = t.astimezone(tz)
    for schedule in session.scalars(select(ReportSchedule).where(ReportSchedule.enabled.is_(True))):
        hours, minutes = map(int, schedule.at.split(":"))
        for back in (0, 1):  # today's time, or yesterday's when a beat down over midnight catches up on it
            moment = (local - timedelta(days=back)).replace(hour=hours, minute=minutes, second=0, microsecond=0)
            # not before its time; not for a day whose time came before the schedule was set; not long after
            if moment <= local < moment + CATCH_UP and moment >= schedule.updated_at:
                _add_sends(
                    session, schedule, moment.date() - timedelta(days=1 if schedule.covers == "yesterday" else 0)
                )
    due = list(
        session.scalars(
            select(ReportSend.id)
            .where(ReportSend.state.in_(DUE_STATES), ReportSend.next_at <= t)
            .where(ReportSend.claimed_until.is_(None) | (ReportSend.claimed_until < t))
            .order_by(ReportSend.next_at, ReportSend.id)
            .limit(200)
        )
    )
    for send_id in due:
        after_commit(session, enqueue, MonitorTask.SEND_REPORT, send_id)
    return due


def _add_sends(session: Session, schedule: ReportSchedule, day: date) -> None:
    """One send per target of ``schedule`` for ``day``, unless there is one already (the unique key)."""
    for target in _targets(schedule):
        try:
            with session.begin_nested():
                session.add(ReportSend(schedule_id=schedule.id, day=day.isoformat(), target=target, next_at=now()))
        except IntegrityError:  # this day went (or is going) to this target already
            continue


# -------------------------------------------------------------------------------------------- sending


def _claim(session: Session, send_id: int, t: datetime) -> bool:
    claimed = session.execute(
        update(ReportSend)
        .where(ReportSend.id == send_id, ReportSend.state.in_(DUE_STATES), ReportSend.next_at <= t)
        .where(ReportSend.claimed_until.is_(None) | (ReportSend.claimed_until < t))
        .values(claimed_until=t + timedelta(seconds=LEASE_S))
    )
    return claimed.rowcount == 1  # type: ignore[attr-defined]


def deliver_report(
    send_id: int,
    *,
    settings: MonitorSettings | None = None,
    client: httpx.Client | None = None,
    limiter: ratelimit.SharedLimiter | None = None,
) -> str:
    """Send one day's report to one target; the send's state afterwards, or ``skipped`` (not due, or another
    worker has it)."""
    settings = settings or get_monitor_settings()
    with session_scope() as session:
        if not _claim(session, send_id, now()):
            return "skipped"
        send = session.get(ReportSend, send_id)
        schedule = session.get(ReportSchedule, send.schedule_id) if send else None
        if send is None or schedule is None:
            return "skipped"
        send.attempts += 1
        channel_id = int(send.target.split(":", 1)[1]) if send.target.startswith("channel:") else None
        if channel_id is None:
            channel = next((c for c in _channels(session, schedule) if c.kind == "email"), None)
        else:
            channel = session.get(AlertChannel, channel_id)
        if channel is None or channel.state != "active":
            send.state, send.claimed_until = "failed", None
            send.last_error = f"channel {channel_id or 'for e-mail'} is {channel.state if channel else 'gone'}"
            return send.state
        kind, config = robots.kind_of(channel.kind), dict(channel.config or {})
        if channel_id is None:
            config["to"] = list(schedule.emails or [])
        try:
            secrets = alerting.unseal(channel.secrets)
        except ConfigError as exc:
            send.state, send.last_error, send.claimed_until = "failed", str(exc), None
            return send.state
        data = report.daily_report(session, SYSTEM, organization=schedule.organization_id,
                                   day=date.fromisoformat(send.day))  # fmt: skip
    title = f"舆情日报：{data['organization']['name']} {data['day']}"
    text = report.summary_text(data, report.report_link(settings, data))
    try:
        if kind is robots.Email:
            send_report_email(secrets, config, title, text, data, settings)
        else:
            _send_robot(kind, secrets, config, title, text, settings, client, limiter)
    except AlertRetry as exc:
        return _retry(send_id, exc, settings)
    except (AlertConfigError, AlertRefused) as exc:
        return _finish(send_id, "failed", str(exc))
    return _finish(send_id, "sent", None)


def _channels(session: Session, schedule: ReportSchedule) -> list[AlertChannel]:
    ids = list(schedule.channels or [])
    found = {c.id: c for c in session.scalars(select(AlertChannel).where(AlertChannel.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def _send_robot(
    kind: type[robots.RobotKind],
    secrets: dict[str, Any],
    config: dict[str, Any],
    title: str,
    text: str,
    settings: MonitorSettings,
    client: httpx.Client | None,
    limiter: ratelimit.SharedLimiter | None,
) -> None:
    webhook = str(secrets.get("webhook", ""))
    limiter = limiter or alerting.robot_limiter(settings)
    own_client = client is None
    client = client or alerting.make_client(settings)
    try:
        # a retry sends every part again: a summary is a part or two, and the robot's limit is shared with alerts
        for part in kind.parts(text, str(config.get("keyword") or "")):
            try:
                limiter.acquire(alerting.robot_key(webhook), kind.rate_per_minute / 60 * alerting.RATE_MARGIN)
            except ratelimit.RateLimitExceeded as exc:
                raise AlertRetry(
                    f"{kind.label}: this robot's next slot is later", retry_after=exc.retry_after
                ) from None
            alerting.post_part(client, kind, webhook, part, title=title, secret=str(secrets.get("secret", "")))
    finally:
        if own_client:
            client.close()


def report_email(
    config: dict[str, Any], title: str, text: str, data: dict[str, Any], settings: MonitorSettings
) -> EmailMessage:
    """The report's e-mail: the summary as text, the page as the HTML alternative, the PDF attached (left out,
    with a line saying so, when no CJK font is installed)."""
    message = EmailMessage()
    message["Subject"] = title
    message["From"] = str(config.get("from", ""))
    message["To"] = ", ".join(config.get("to", []))
    try:
        pdf: bytes | None = report.render_pdf(data, settings)
    except report.ReportFontMissing as exc:
        log.warning("daily report of %s: no PDF: %s", data["organization"]["name"], exc)
        pdf, text = None, f"{text}\n（PDF 未附：{exc}）"
    message.set_content(text)
    message.add_alternative(report.render_html(data), subtype="html")
    if pdf is not None:
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"report-{data['day']}.pdf")
    return message


def send_report_email(
    secrets: dict[str, Any],
    config: dict[str, Any],
    title: str,
    text: str,
    data: dict[str, Any],
    settings: MonitorSettings,
) -> None:
    """Send the report through the channel's SMTP server; SMTP answers mapped as :func:`alerting.send_email`'s."""
    message = report_email(config, title, text, data, settings)
    alerting.send_message(secrets, config, message, settings, what="the report's e-mail")


def _finish(send_id: int, state: str, error: str | None) -> str:
    with session_scope() as session:
        send = session.get(ReportSend, send_id)
        if send is None:
            return "skipped"
        send.state, send.last_error, send.claimed_until = state, (error or None) and error[:2000], None
        if state == "sent":
            send.sent_at = now()
        return state


def _retry(send_id: int, error: AlertRetry, settings: MonitorSettings) -> str:
    retry_after = error.retry_after
    with session_scope() as session:
        send = session.get(ReportSend, send_id)
        if send is None:
            return "skipped"
        send.last_error, send.claimed_until = str(error)[:2000], None
        if send.attempts >= settings.alert_max_attempts:
            send.state = "failed"
            return send.state
        delay = retry_after if retry_after is not None else alerting.backoff_s(send.attempts)
        send.state, send.next_at = "retry", now() + timedelta(seconds=max(1.0, delay))
        log.info("report send %s: retry in %.0f s: %s", send_id, delay, error)
        return send.state
