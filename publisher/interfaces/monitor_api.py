"""The monitor's HTTP routes (an ``APIRouter`` under ``/monitor``): sources, rules, items, stories, polls.

Included by :mod:`publisher.interfaces.api` with one line, behind the same identity middleware and error
handlers: every user error is a 4xx with a one-line ``detail``; bodies are strict (unknown fields refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from core.db import session_scope
from monitor import services
from monitor.models import NAME_MAX, URL_MAX
from monitor.needs import NEED_KEYS
from monitor.query import QUERY_MAX
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
