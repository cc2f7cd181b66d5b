"""The monitor's pages (舆情监测): the live stream with its filters, stories, the workers'-needs radar and the
alert log — over the monitor's own read models (:mod:`monitor.services`, :mod:`monitor.radar`,
:mod:`monitor.alert_channels`), the same ones ``/monitor/...`` in the API serves.

An item's HTML was sanitised (nh3) when it was stored; its link is shown only when it is http(s), so a feed's
``javascript:`` link is text, never a link.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from core.errors import InvalidInput, MatrixError
from monitor import alert_channels, radar
from monitor import services as monitor
from monitor.needs import NEEDS
from publisher.interfaces.web.dashboards import _int_or_none
from publisher.interfaces.web.pages import Db, Me, error_page, render

router = APIRouter(include_in_schema=False)

STREAM_PAGE = 50
STORIES_PAGE = 50  # the most recently active; each row counts its sources


def _filters(rule: str | None, need: str | None, story: str | None) -> dict[str, Any]:
    """The stream's filters from the query string (a form's empty choice is "any")."""
    if need and need not in {n.key for n in NEEDS}:
        raise InvalidInput(f"unknown need {need!r}; choose from {', '.join(n.key for n in NEEDS)}")
    return {"rule_id": _int_or_none(rule, "rule"), "need": need or None, "story_id": _int_or_none(story, "story")}


def _safe_links(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for item in items:
        link = item.get("link") or ""
        item["href"] = link if link.lower().startswith(("https://", "http://")) else None
    return items


@router.get("/ui/monitor")
def stream_page(
    request: Request,
    actor: Me,
    session: Db,
    rule: str | None = None,
    need: str | None = None,
    story: str | None = None,
    page: int = 0,
) -> Response:
    """The live stream: the newest items first, filtered by rule, need or story; the list refreshes itself."""
    try:
        filters = _filters(rule, need, story)
        items = monitor.item_rows(session, actor, **filters, limit=STREAM_PAGE, offset=max(page, 0) * STREAM_PAGE)
        rules = monitor.rule_rows(session, actor)
    except MatrixError as exc:
        return error_page(request, exc)
    template = "_monitor_items.html" if request.headers.get("HX-Request") else "monitor_stream.html"
    return render(
        request,
        template,
        items=_safe_links(items),
        rules=rules,
        needs=NEEDS,
        chosen={"rule": rule or "", "need": need or "", "story": story or ""},
        page=max(page, 0),
        more=len(items) == STREAM_PAGE,
    )


@router.get("/ui/monitor/stories")
def stories_page(request: Request, actor: Me, session: Db) -> Response:
    """Stories (reposts clustered), the most recently active first, with how many sources carried each."""
    try:
        stories = monitor.story_rows(session, actor, limit=STORIES_PAGE)
    except MatrixError as exc:
        return error_page(request, exc)
    return render(request, "monitor_stories.html", stories=stories)


@router.get("/ui/monitor/stories/{story_id}")
def story_page(request: Request, story_id: int, actor: Me, session: Db) -> Response:
    """One story: every version of it the sources carried."""
    try:
        story = monitor.story_detail(session, actor, story_id)
    except MatrixError as exc:
        return error_page(request, exc)
    _safe_links(story["items"])
    return render(request, "monitor_story.html", story=story)


@router.get("/ui/monitor/needs")
def needs_page(request: Request, actor: Me, session: Db, days: str | None = None) -> Response:
    """The workers'-needs radar: each need per day, which rise, and where (per organisation)."""
    try:
        data = radar.needs_radar(session, actor, days=_int_or_none(days, "days") or 14)
    except MatrixError as exc:
        return error_page(request, exc)
    return render(request, "monitor_needs.html", radar=data)


@router.get("/ui/monitor/alerts")
def alerts_page(request: Request, actor: Me, session: Db, rule: str | None = None) -> Response:
    """The alert log: each alert and its state on every robot and mailbox it goes to."""
    try:
        alerts = alert_channels.alert_rows(session, actor, rule_id=_int_or_none(rule, "rule"), limit=200)
    except MatrixError as exc:
        return error_page(request, exc)
    return render(request, "monitor_alerts.html", alerts=alerts)
