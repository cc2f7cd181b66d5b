"""The dashboards' pages: the publishing calendar, engagement over time with the top posts, and the matrix's
ranking, with CSV exports of the tables.

The pages read (:mod:`publisher.services.dashboards`); rescheduling by dragging on the calendar is the page's
call to the API's own ``POST /posts/{id}/schedule`` (``static/dashboards.js``, with the CSRF secret). The charts
and the calendar are the vendored ECharts and EventCalendar, served from this server.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import parse_local
from core.errors import InvalidInput, MatrixError
from core.settings import get_settings
from publisher import services
from publisher.domain.lifecycle import PostState
from publisher.domain.models import Account, Organization
from publisher.interfaces.web.pages import Db, Me, error_page, render
from publisher.services import Principal
from publisher.services.dashboards import CLASH_WINDOW, INDEX_WEIGHTS, METRICS

router = APIRouter(include_in_schema=False)

BOM = "\ufeff"  # Excel reads a CSV as UTF-8 (and its Chinese correctly) only with it


def _int_or_none(value: str | None, name: str) -> int | None:
    """A query parameter that is an id or empty (a form's "any" choice)."""
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number") from None


def _days(value: str | None) -> int:
    return _int_or_none(value, "days") or 30


def _choices(session: Session, actor: Principal) -> dict[str, Any]:
    """What the filters offer: the organisations the person may view and their accounts' channels."""
    orgs = services.visible_orgs(session, actor, "post.view")
    oq = select(Organization.id, Organization.name).order_by(Organization.id)
    kq = select(Account.kind).distinct().order_by(Account.kind)
    if orgs is not None:
        oq = oq.where(Organization.id.in_(orgs))
        kq = kq.where(Account.organization_id.in_(orgs))
    return {
        "organizations": [{"id": i, "name": n} for i, n in session.execute(oq)],
        "channels": list(session.scalars(kq)),
    }


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """A CSV download: UTF-8 with a byte-order mark, so Excel opens Chinese text correctly."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        (BOM + out.getvalue()).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ------------------------------------------------------------------------------------------ calendar


@router.get("/ui/calendar")
def calendar_page(request: Request, actor: Me, session: Db) -> Response:
    """Week and month views of what goes out and what went out; clashes marked; scheduled posts can be dragged."""
    return render(request, "calendar.html", states=list(PostState), **_choices(session, actor))


def _local(value: datetime) -> str:
    """A time as the calendar shows it: the configured zone's wall clock, without an offset."""
    return value.astimezone(get_settings().tz).strftime("%Y-%m-%dT%H:%M:%S")


@router.get("/ui/calendar/events")
def calendar_feed(
    request: Request,
    actor: Me,
    session: Db,
    start: str = "",
    end: str = "",
    organization: str | None = None,
    channel: str | None = None,
    state: str | None = None,
) -> Response:
    """The calendar's events in ``[start, end)`` (local times, as EventCalendar sends them) as JSON."""
    try:
        events = services.calendar_events(
            session,
            actor,
            parse_local(start, allow_past=True),
            parse_local(end, allow_past=True),
            organization=_int_or_none(organization, "organization"),
            channel=channel or None,
            state=state or None,
        )
    except MatrixError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)
    out = []
    for e in events:
        classes = ["ev-" + e["kind"]] + (["ev-clash"] if e["clash"] else [])
        out.append(
            {
                "id": f"{e['kind']}-{e['post_id']}-{e['account_id']}",
                "title": f"#{e['post_id']} {e['title']} · {e['account']}",
                "start": _local(e["at"]),
                "end": _local(e["at"] + CLASH_WINDOW / 2),
                "editable": e["kind"] == "scheduled",
                "startEditable": e["kind"] == "scheduled",
                "durationEditable": False,
                "classNames": classes,
                "backgroundColor": "#cf222e" if e["clash"] else ("#9a6700" if e["kind"] == "scheduled" else "#1a7f37"),
                "extendedProps": {k: e[k] for k in ("post_id", "state", "kind", "account", "channel", "clash")},
            }
        )
    return JSONResponse(out)


# ------------------------------------------------------------------------------------------ dashboard


@router.get("/ui/dashboard")
def dashboard_page(
    request: Request,
    actor: Me,
    session: Db,
    organization: str | None = None,
    channel: str | None = None,
    days: str | None = None,
) -> Response:
    """Engagement over time (a line chart) and the top posts, filtered by organisation and channel."""
    try:
        org, n = _int_or_none(organization, "organization"), _days(days)
        series = services.engagement_series(session, actor, channel=channel or None, organization_id=org, days=n)
        top = services.top_posts(session, actor, channel=channel or None, organization_id=org, days=n)
    except MatrixError as exc:
        return error_page(request, exc)
    return render(
        request,
        "dashboard.html",
        series=series,
        top=top,
        metrics=METRICS,
        organization=org,
        channel=channel or "",
        days=n,
        **_choices(session, actor),
    )


@router.get("/ui/dashboard/top.csv")
def top_csv(
    actor: Me, session: Db, organization: str | None = None, channel: str | None = None, days: str | None = None
) -> Response:
    """The top posts table as CSV."""
    rows = services.top_posts(
        session, actor, channel=channel or None, organization_id=_int_or_none(organization, "organization"),
        days=_days(days),
    )  # fmt: skip
    header = ["post_id", "title", "organization", "deliveries", *METRICS]
    return csv_response("top-posts.csv", header, ([r[k] for k in header] for r in rows))


# ------------------------------------------------------------------------------------------ ranking


@router.get("/ui/ranking")
def ranking_page(request: Request, actor: Me, session: Db, days: str | None = None) -> Response:
    """The matrix index per account and per organisation, with its definition."""
    try:
        n = _days(days)
        ranking = services.matrix_ranking(session, actor, days=n)
    except MatrixError as exc:
        return error_page(request, exc)
    return render(request, "ranking.html", ranking=ranking, days=n, weights=INDEX_WEIGHTS)


@router.get("/ui/ranking.csv")
def ranking_csv(actor: Me, session: Db, days: str | None = None) -> Response:
    """Both ranking tables as one CSV: a ``level`` column says account or organisation."""
    ranking = services.matrix_ranking(session, actor, days=_days(days))
    header = ["level", "rank", "name", "channel", "organization", "posts", *METRICS, "index"]
    rows: list[list[Any]] = [
        ["account", r["rank"], r["account"], r["channel"], r["organization"], r["posts"], *(r[m] for m in METRICS),
         r["index"]]
        for r in ranking["accounts"]
    ]  # fmt: skip
    rows += [
        ["organization", r["rank"], r["organization"], "", r["organization"], r["posts"], *(r[m] for m in METRICS),
         r["index"]]
        for r in ranking["organizations"]
    ]  # fmt: skip
    return csv_response("ranking.csv", header, rows)
