"""Alert channels (robots and e-mail) and the alert log: what monitors and admins do, and the read models.

As :mod:`monitor.services`: each service takes the session, then the acting Principal, asks ``monitor.view`` /
``monitor.manage`` on the object's organisation, commits nothing itself, and raises :mod:`core.errors`, one
line each. Secrets given here (webhook URLs with their keys, signing secrets, SMTP passwords) are encrypted at
once and never read back: the read model shows the platform's host and which secrets are set, not their values.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import iso_local
from core.crypto import rotate
from core.errors import Conflict, InvalidInput, NotFound
from monitor.alerting import parse_hhmm, seal, where
from monitor.models import NAME_MAX, URL_MAX, Alert, AlertChannel, AlertSend, Burst, Item, Rule
from monitor.robots import KINDS, Email, kind_of
from monitor.services import LIST_MAX, _org_for
from publisher.domain.models import Organization
from publisher.services.common import audit, check_length, get
from publisher.services.people import Principal, require, visible_orgs

KEYWORD_MAX = 40
SECRET_MAX = 500
RECIPIENTS_MAX = 20
ADDRESS_MAX = 254
SECURITY = ("starttls", "ssl", "none")


def _webhook(url: str) -> str:
    url = url.strip()
    check_length("the webhook URL", url, URL_MAX)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise InvalidInput("the webhook is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput("a webhook is an http:// or https:// URL with a host")
    return url


def _address(value: str, what: str) -> str:
    value = value.strip()
    check_length(what, value, ADDRESS_MAX)
    local, _, domain = value.rpartition("@")
    if not local or "." not in domain or any(c in value for c in " \r\n,;<>"):
        raise InvalidInput(f"{what} {value!r} is not an e-mail address")
    return value


def _quiet(start: str | None, end: str | None) -> tuple[str | None, str | None]:
    start, end = (start or "").strip() or None, (end or "").strip() or None
    if (start is None) != (end is None):
        raise InvalidInput("quiet hours need a start and an end (e.g. 22:00 and 07:30)")
    if start is None or end is None:
        return None, None
    s, e = parse_hhmm(start), parse_hhmm(end)
    return s.strftime("%H:%M"), e.strftime("%H:%M")


def _rules(session: Session, actor: Principal, ids: list[int] | None) -> list[int]:
    ids = list(dict.fromkeys(ids or []))
    if len(ids) > LIST_MAX:
        raise InvalidInput(f"a channel names at most {LIST_MAX} rules")
    allowed = visible_orgs(session, actor, "monitor.view")
    for rule_id in ids:
        rule = get(session, Rule, rule_id)
        if allowed is not None and rule.organization_id not in allowed:
            raise NotFound(f"rule {rule_id} not found")
    return ids


def add_channel(
    session: Session,
    actor: Principal,
    *,
    kind: str,
    name: str,
    organization: int | str | None = None,
    webhook: str = "",
    secret: str = "",
    keyword: str = "",
    rules: list[int] | None = None,
    quiet_start: str | None = None,
    quiet_end: str | None = None,
    smtp_host: str = "",
    smtp_port: int | None = None,
    smtp_security: str = "starttls",
    smtp_username: str = "",
    smtp_password: str = "",
    mail_from: str = "",
    mail_to: list[str] | None = None,
) -> AlertChannel:
    """A new alert channel of an organisation; by default it takes the alerts of that organisation's rules."""
    if kind not in KINDS:
        raise InvalidInput(f"kind is one of {', '.join(sorted(KINDS))}, not {kind!r}")
    org = _org_for(session, actor, organization, "monitor.manage")
    name = name.strip()
    if not name:
        raise InvalidInput("a channel needs a name")
    check_length("the name", name, NAME_MAX)
    if session.scalar(select(AlertChannel.id).where(AlertChannel.organization_id == org.id, AlertChannel.name == name)):
        raise Conflict(f"{org.name} already has an alert channel named {name!r}")
    cls = kind_of(kind)
    check_length("the secret", secret, SECRET_MAX)
    check_length("the keyword", keyword.strip(), KEYWORD_MAX)
    config: dict[str, Any] = {"rules": _rules(session, actor, rules)}
    secrets: dict[str, Any] = {}
    if cls is Email:
        if webhook or secret or keyword:
            raise InvalidInput("an e-mail channel takes --smtp-host, --from and --to, not a webhook")
        host = smtp_host.strip()
        if not host:
            raise InvalidInput("an e-mail channel needs its SMTP host")
        check_length("the SMTP host", host, 255)
        port = int(smtp_port or (465 if smtp_security == "ssl" else 587 if smtp_security == "starttls" else 25))
        if not 1 <= port <= 65535:
            raise InvalidInput(f"SMTP port {port} is not between 1 and 65535")
        if smtp_security not in SECURITY:
            raise InvalidInput(f"SMTP security is one of {', '.join(SECURITY)}")
        recipients = [_address(a, "a recipient") for a in (mail_to or []) if a.strip()]
        if not recipients or len(recipients) > RECIPIENTS_MAX:
            raise InvalidInput(f"an e-mail channel has 1 to {RECIPIENTS_MAX} recipients (--to)")
        check_length("the SMTP user", smtp_username, NAME_MAX)
        check_length("the SMTP password", smtp_password, SECRET_MAX)
        config |= {"smtp_host": host, "smtp_port": port, "security": smtp_security, "username": smtp_username,
                   "from": _address(mail_from, "the sender"), "to": recipients}  # fmt: skip
        secrets = {"password": smtp_password}
    else:
        if not webhook:
            raise InvalidInput(f"a {cls.label} channel needs its webhook URL")
        if secret and not cls.uses_secret:
            raise InvalidInput(f"a {cls.label} has no signing secret (its key is in the webhook URL)")
        if keyword.strip() and not cls.uses_keyword:
            raise InvalidInput(f"a {cls.label} has no keyword setting")
        secrets = {"webhook": _webhook(webhook), "secret": secret.strip()}
        config |= {"keyword": keyword.strip(), "host": where(secrets["webhook"])}
    start, end = _quiet(quiet_start, quiet_end)
    channel = AlertChannel(
        organization_id=org.id,
        name=name,
        kind=kind,
        secrets=seal(secrets),
        config=config,
        quiet_start=start,
        quiet_end=end,
        created_by=actor.user_id,
    )
    session.add(channel)
    session.flush()
    audit(session, actor, "monitor.alert_channel.add", channel, kind=kind, name=name, organization=org.name)
    return channel


def find_channel(session: Session, actor: Principal, channel_id: int, action: str = "monitor.view") -> AlertChannel:
    """A channel the actor may ``action`` (404 outside their organisations, and for a removed one)."""
    try:
        channel = get(session, AlertChannel, channel_id)
    except NotFound:
        raise NotFound(f"alert channel {channel_id} not found") from None
    allowed = visible_orgs(session, actor, action)
    if channel.state == "removed" or (allowed is not None and channel.organization_id not in allowed):
        raise NotFound(f"alert channel {channel_id} not found")
    require(session, actor, action, channel.organization_id)
    return channel


def remove_channel(session: Session, actor: Principal, channel_id: int) -> AlertChannel:
    """Remove a channel: its secrets are erased, its sends kept for the alert log, nothing more goes to it."""
    channel = find_channel(session, actor, channel_id, "monitor.manage")
    channel.state, channel.state_reason = "removed", f"removed by {actor.name}"
    channel.secrets = seal({})
    channel.name = f"{channel.name[: NAME_MAX - 20]} (removed {channel.id})"  # its name may be used again
    audit(session, actor, "monitor.alert_channel.remove", channel)
    return channel


def rotate_secrets(session: Session) -> int:
    """Re-encrypt every alert channel's secrets with the current key; how many channels (removed ones too).

    Part of ``matrix secrets rotate``, which checks the actor and commits: the rows are locked for the
    rotation (on PostgreSQL a concurrent write, such as a removal, waits for it; a send reading meanwhile sees
    the old value, which the old key still decrypts), and a channel whose secrets no configured key decrypts
    raises :class:`core.errors.ConfigError` naming it, so the caller's transaction changes nothing.
    Removed channels hold an encrypted empty mapping, rotated like the rest, so no row keeps the old
    key. Running it again re-encrypts with the same key: harmless.
    """
    channels = session.scalars(select(AlertChannel).order_by(AlertChannel.id).with_for_update()).all()
    for channel in channels:
        # ``seal`` encrypts with the credential cipher, so the credential rotation is the matching one.
        channel.secrets = rotate(channel.secrets, f"the secrets of alert channel {channel.id}")
    return len(channels)


def channel_row(session: Session, channel: AlertChannel) -> dict[str, Any]:
    """The read model of a channel: where it goes, never its secrets."""
    org = session.get(Organization, channel.organization_id)
    config = channel.config or {}
    cls = kind_of(channel.kind)
    if cls is Email:
        target = f"{', '.join(config.get('to', []))} via {config.get('smtp_host')}:{config.get('smtp_port')}"
    else:
        target = config.get("host", "")
    return {
        "id": channel.id,
        "name": channel.name,
        "kind": channel.kind,
        "label": cls.label,
        "organization": org.name if org else None,
        "target": target,
        "keyword": config.get("keyword", ""),
        "rules": list(config.get("rules", [])),
        "quiet_hours": f"{channel.quiet_start}-{channel.quiet_end}" if channel.quiet_start else None,
        "rate_per_minute": cls.rate_per_minute or None,
        "state": channel.state,
        "state_reason": channel.state_reason,
        "created_at": iso_local(channel.created_at),
    }


def channel_rows(session: Session, actor: Principal) -> list[dict[str, Any]]:
    """The channels the actor may see (removed ones left out), by id."""
    require(session, actor, "monitor.view")
    q = select(AlertChannel).where(AlertChannel.state != "removed").order_by(AlertChannel.id)
    allowed = visible_orgs(session, actor, "monitor.view")
    if allowed is not None:
        q = q.where(AlertChannel.organization_id.in_(allowed))
    return [channel_row(session, c) for c in session.scalars(q)]


def alert_rows(
    session: Session, actor: Principal, *, rule_id: int | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The alert log: alerts of the rules the actor may see, newest first, each with its per-channel sends."""
    require(session, actor, "monitor.view")
    q = select(Alert, Rule).join(Rule, Rule.id == Alert.rule_id).order_by(Alert.id.desc())
    allowed = visible_orgs(session, actor, "monitor.view")
    if allowed is not None:
        q = q.where(Rule.organization_id.in_(allowed))
    if rule_id is not None:
        q = q.where(Alert.rule_id == rule_id)
    pairs = session.execute(q.limit(min(limit, LIST_MAX)).offset(offset)).all()
    ids = [a.id for a, _r in pairs]
    sends = _send_rows(session, AlertSend.alert_id, ids)
    items = {i.id: i for i in session.scalars(select(Item).where(Item.id.in_([a.item_id for a, _r in pairs])))}
    rows = []
    for alert, rule in pairs:
        item = items.get(alert.item_id)
        rows.append(
            {
                "id": alert.id,
                "rule": {"id": rule.id, "name": rule.name},
                "story_id": alert.story_id,
                "item": {"id": alert.item_id, "title": item.title if item else "", "link": item.link if item else ""},
                "message": alert.message,
                "window_start": iso_local(alert.window_start),
                "created_at": iso_local(alert.created_at),
                "sends": sends.get(alert.id, []),
            }
        )
    return rows


def burst_rows(session: Session, actor: Principal, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """The bursts of the actor's organisations, newest first: what rose, how far, the words, the sends."""
    require(session, actor, "monitor.view")
    q = select(Burst).order_by(Burst.id.desc())
    allowed = visible_orgs(session, actor, "monitor.view")
    if allowed is not None:
        q = q.where(Burst.organization_id.in_(allowed))
    found = list(session.scalars(q.limit(min(limit, LIST_MAX)).offset(offset)))
    sends = _send_rows(session, AlertSend.burst_id, [b.id for b in found])
    return [
        {
            "id": b.id,
            "key": b.key,
            "rule_id": b.rule_id,
            "hour_start": iso_local(b.hour_start),
            "count": b.count,
            "baseline": b.baseline,
            "zscore": b.zscore,
            "terms": list(b.terms or []),
            "message": b.message,
            "sends": sends.get(b.id, []),
        }
        for b in found
    ]


def _send_rows(session: Session, column: Any, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Per alert (or burst) id in ``ids``: its sends on every channel."""
    sends: dict[int, list[dict[str, Any]]] = {}
    channels = {c.id: c for c in session.scalars(select(AlertChannel))} if ids else {}
    for send in session.scalars(select(AlertSend).where(column.in_(ids)).order_by(AlertSend.id)):
        channel = channels.get(send.channel_id)
        owner = send.alert_id if send.alert_id is not None else send.burst_id
        sends.setdefault(owner or 0, []).append(
            {
                "channel_id": send.channel_id,
                "channel": channel.name if channel else None,
                "kind": channel.kind if channel else None,
                "state": send.state,
                "attempts": send.attempts,
                "parts_sent": send.parts_sent,
                "parts_total": send.parts_total,
                "next_at": iso_local(send.next_at) if send.state in ("queued", "held", "retry") else None,
                "sent_at": iso_local(send.sent_at),
                "last_error": send.last_error,
            }
        )
    return sends
