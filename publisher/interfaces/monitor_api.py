"""The monitor's HTTP routes (an ``APIRouter`` under ``/monitor``): sources, rules, items, stories, polls, alert
channels and the alert log.

Included by :mod:`publisher.interfaces.api` with one line, behind the same identity middleware and error
handlers: every user error is a 4xx with a one-line ``detail``; bodies are strict (unknown fields refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from core.db import session_scope
from monitor import alert_channels, report, report_schedule, services
from monitor.models import NAME_MAX, URL_MAX
from monitor.needs import NEED_KEYS
from monitor.query import QUERY_MAX
from monitor.robots import KINDS
from publisher.interfaces.identity import current_principal
from publisher.services import LABEL_MAX, Principal

router = APIRouter(prefix="/monitor", tags=["monitor"])
Actor = Annotated[Principal, Depends(current_principal)]
Limit = Annotated[int, Query(ge=1, le=services.LIST_MAX)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
OrgRef = Annotated[str, Field(max_length=LABEL_MAX)] | int
Tag = Annotated[str, Field(max_length=services.TAG_MAX)]


def db() -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    with session_scope() as session:
        yield session


class Strict(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class SourceIn(Strict):
    """A new feed source."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"url": "https://rsshub.example/weibo/keyword/欠薪", "tags": ["weibo"]}]},
    )

    url: str = Field(max_length=URL_MAX)
    name: str = Field("", max_length=NAME_MAX)
    organization: OrgRef | None = Field(None, description="Name or id; default: the one you monitor.")
    interval_s: int | None = Field(None, ge=1, le=7 * 86_400)
    tags: list[Tag] = Field(default_factory=list, max_length=services.TAGS_MAX)


class CommentsSourceIn(Strict):
    """A new source of the comments on our own published posts: an organisation's, or one account's."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"account_id": 3, "tags": ["评论"]}]})

    organization: OrgRef | None = Field(None, description="Name or id; default: the account's, or the one you monitor.")
    account_id: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Only this account's posts (one of the organisation's)."
    )
    name: str = Field("", max_length=NAME_MAX)
    interval_s: int | None = Field(None, ge=1, le=7 * 86_400)
    tags: list[Tag] = Field(default_factory=list, max_length=services.TAGS_MAX)


class RuleIn(Strict):
    """A new keyword rule."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "欠薪", "query": '欠薪 OR "拖欠 工资"'}]}
    )

    name: str = Field(max_length=NAME_MAX)
    query: str = Field(max_length=QUERY_MAX)
    organization: OrgRef | None = None
    sources: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, max_length=services.SCOPE_SOURCES_MAX)
    tags: list[Tag] = Field(default_factory=list, max_length=services.TAGS_MAX)


class AlertChannelIn(Strict):
    """A new alert channel: a robot webhook (WeCom, DingTalk, Feishu) or e-mail through SMTP.

    Secrets (``webhook``, ``secret``, ``smtp_password``) are stored encrypted and never shown back.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "dingtalk",
                    "name": "舆情群",
                    "webhook": "https://oapi.dingtalk.com/robot/send?access_token=…",
                    "secret": "SEC…",
                    "keyword": "舆情",
                    "quiet_start": "22:00",
                    "quiet_end": "07:30",
                }
            ]
        },
    )

    kind: str = Field(max_length=20, description=f"One of {', '.join(sorted(KINDS))}.")
    name: str = Field(max_length=NAME_MAX)
    organization: OrgRef | None = Field(None, description="Name or id; default: the one you monitor.")
    webhook: str = Field("", max_length=URL_MAX)
    secret: str = Field("", max_length=alert_channels.SECRET_MAX, description="DingTalk / Feishu signing secret.")
    keyword: str = Field("", max_length=alert_channels.KEYWORD_MAX, description="The robot's keyword, if it has one.")
    rules: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, max_length=services.LIST_MAX, description="Only these rules (default: the org's)."
    )
    quiet_start: str | None = Field(None, max_length=5, description="HH:MM, local: alerts held until quiet_end.")
    quiet_end: str | None = Field(None, max_length=5)
    smtp_host: str = Field("", max_length=255)
    smtp_port: int | None = Field(None, ge=1, le=65535)
    smtp_security: str = Field("starttls", max_length=10, description="starttls | ssl | none")
    smtp_username: str = Field("", max_length=NAME_MAX)
    smtp_password: str = Field("", max_length=alert_channels.SECRET_MAX)
    mail_from: str = Field("", max_length=alert_channels.ADDRESS_MAX)
    mail_to: list[Annotated[str, Field(max_length=alert_channels.ADDRESS_MAX)]] = Field(
        default_factory=list, max_length=alert_channels.RECIPIENTS_MAX
    )


class PollIn(Strict):
    """Sources to make due now (empty: every active source you manage)."""

    sources: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, max_length=services.LIST_MAX)


@router.get("/sources")
def list_sources(
    actor: Actor,
    tag: Annotated[str | None, Query(max_length=services.TAG_MAX)] = None,
    limit: Limit = services.LIST_MAX,
    offset: Offset = 0,
    session: Session = Depends(db),
) -> list[dict[str, Any]]:
    """The sources you may see, with their health (failures, last error, fetches and parses)."""
    return services.source_rows(session, actor, tag=tag, limit=limit, offset=offset)


@router.post("/sources", status_code=201)
def add_source(body: SourceIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Add a feed source; it is due at once."""
    source = services.add_source(
        session,
        actor,
        url=body.url,
        name=body.name,
        organization=body.organization,
        interval_s=body.interval_s,
        tags=body.tags,
    )
    return services.source_row(session, source)


@router.post("/sources/comments", status_code=201)
def add_comments_source(body: CommentsSourceIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Add a source of the comments on the organisation's own published posts (or one account's); due at once."""
    source = services.add_comments_source(
        session,
        actor,
        organization=body.organization,
        account=body.account_id,
        name=body.name,
        interval_s=body.interval_s,
        tags=body.tags,
    )
    return services.source_row(session, source)


@router.get("/sources/{source_id}/cursors")
def comment_cursors(source_id: int, actor: Actor, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """A comments source's progress per post: comments read, state (``gone`` once deleted), last error."""
    return services.comment_cursor_rows(session, actor, source_id)


@router.get("/sources/{source_id}")
def show_source(source_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """One source."""
    return services.source_row(session, services.find_source(session, actor, source_id))


@router.post("/sources/{source_id}/pause")
def pause_source(source_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Pause a source."""
    return services.source_row(session, services.set_source_state(session, actor, source_id, paused=True))


@router.post("/sources/{source_id}/resume")
def resume_source(source_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Resume a paused source (due at once)."""
    return services.source_row(session, services.set_source_state(session, actor, source_id, paused=False))


@router.post("/poll")
def poll(body: PollIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Make sources due now and wake the monitor's poller."""
    return {"due": services.poll_now(session, actor, body.sources or None)}


@router.get("/rules")
def list_rules(
    actor: Actor, limit: Limit = services.LIST_MAX, offset: Offset = 0, session: Session = Depends(db)
) -> list[dict[str, Any]]:
    """The rules you may see, with their hit and alert counts."""
    return services.rule_rows(session, actor, limit=limit, offset=offset)


@router.post("/rules", status_code=201)
def add_rule(body: RuleIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Add a rule; a query that does not parse is refused with its reason."""
    rule = services.add_rule(
        session,
        actor,
        name=body.name,
        query_text=body.query,
        organization=body.organization,
        sources=body.sources,
        tags=body.tags,
    )
    return {"id": rule.id, "name": rule.name, "query": rule.query, "scope": rule.scope}


@router.get("/items")
def list_items(
    actor: Actor,
    rule: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    story: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    need: Annotated[str | None, Query(max_length=30, description=f"One of {', '.join(NEED_KEYS)}")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    session: Session = Depends(db),
) -> list[dict[str, Any]]:
    """Items you may see, newest first; filter by a rule's hits, a story or a need."""
    return services.item_rows(session, actor, rule_id=rule, story_id=story, need=need, limit=limit, offset=offset)


@router.get("/stories")
def list_stories(
    actor: Actor, limit: Limit = 100, offset: Offset = 0, session: Session = Depends(db)
) -> list[dict[str, Any]]:
    """Stories (near-duplicate items across sources), most recently active first."""
    return services.story_rows(session, actor, limit=limit, offset=offset)


@router.get("/stories/{story_id}")
def show_story(story_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """One story with its items."""
    return services.story_detail(session, actor, story_id)


@router.get("/alert-channels")
def list_alert_channels(actor: Actor, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """The alert channels you may see: kind, where they go (the platform's host), state; never their secrets."""
    return alert_channels.channel_rows(session, actor)


@router.post("/alert-channels", status_code=201)
def add_alert_channel(body: AlertChannelIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Add an alert channel (needs monitor.manage on its organisation)."""
    channel = alert_channels.add_channel(session, actor, **body.model_dump())
    return alert_channels.channel_row(session, channel)


@router.delete("/alert-channels/{channel_id}")
def remove_alert_channel(channel_id: int, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Remove an alert channel: its secrets are erased; the alerts it was sent stay in the log."""
    channel = alert_channels.remove_channel(session, actor, channel_id)
    return {"id": channel.id, "state": channel.state}


@router.get("/alerts")
def list_alerts(
    actor: Actor,
    rule: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    session: Session = Depends(db),
) -> list[dict[str, Any]]:
    """The alert log, newest first: each alert with its state on every channel (sent, held, retry, failed)."""
    return alert_channels.alert_rows(session, actor, rule_id=rule, limit=limit, offset=offset)


@router.get("/bursts")
def list_bursts(
    actor: Actor, limit: Limit = 100, offset: Offset = 0, session: Session = Depends(db)
) -> list[dict[str, Any]]:
    """Bursts (an hour far over its baseline) of your organisations, newest first, with the words that rose."""
    return alert_channels.burst_rows(session, actor, limit=limit, offset=offset)


# ----------------------------------------------------------------------------------------- daily report

OrgQuery = Annotated[str | None, Query(max_length=LABEL_MAX, description="Name or id; default: the one you monitor.")]
DayQuery = Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD, local; default: today.")]


class ReportScheduleIn(Strict):
    """An organisation's daily report schedule (replaces the one it has)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"at": "08:00", "channels": [1], "covers": "yesterday"}]}
    )

    at: str = Field(max_length=5, description="Local time of day, HH:MM.")
    organization: OrgRef | None = None
    covers: str = Field("yesterday", max_length=10, description="yesterday | today")
    channels: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(max_length=report_schedule.CHANNELS_MAX)
    emails: list[Annotated[str, Field(max_length=alert_channels.ADDRESS_MAX)]] = Field(
        default_factory=list, max_length=report_schedule.EMAILS_MAX, description="Sent via an e-mail channel."
    )
    enabled: bool = True


def _report(session: Session, actor: Principal, org: str | None, day: str | None) -> dict[str, Any]:
    return report.daily_report(session, actor, organization=org, day=report.parse_day(day))


@router.get("/report")
def show_report(
    actor: Actor, org: OrgQuery = None, day: DayQuery = None, session: Session = Depends(db)
) -> dict[str, Any]:
    """The daily report of an organisation and its subtree: volume, negativity against the 7 days before, top
    stories, needs and their trends, the day's alerts and bursts."""
    return _report(session, actor, org, day)


@router.get("/report.html", response_class=HTMLResponse)
def report_html(
    actor: Actor, org: OrgQuery = None, day: DayQuery = None, session: Session = Depends(db)
) -> HTMLResponse:
    """The daily report as a self-contained HTML page."""
    return HTMLResponse(report.render_html(_report(session, actor, org, day)))


@router.get("/report.pdf", response_class=Response, responses={200: {"content": {"application/pdf": {}}}})
def report_pdf(actor: Actor, org: OrgQuery = None, day: DayQuery = None, session: Session = Depends(db)) -> Response:
    """The daily report as a PDF (409 with the reason when the server has no CJK font)."""
    data = _report(session, actor, org, day)
    name = f"report-{data['organization']['id']}-{data['day']}.pdf"
    return Response(
        report.render_pdf(data),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


@router.get("/report/schedules")
def list_report_schedules(actor: Actor, session: Session = Depends(db)) -> list[dict[str, Any]]:
    """The daily report schedules you may see, with their last sends."""
    return report_schedule.schedule_rows(session, actor)


@router.put("/report/schedules")
def set_report_schedule(body: ReportScheduleIn, actor: Actor, session: Session = Depends(db)) -> dict[str, Any]:
    """Set an organisation's daily report schedule (needs monitor.manage there)."""
    schedule = report_schedule.set_schedule(session, actor, **body.model_dump())
    return report_schedule.schedule_row(session, schedule)
