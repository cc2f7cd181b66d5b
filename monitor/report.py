"""The daily report (舆情日报) of an organisation and its subtree for one local calendar day: a read model, and
its renderings — an HTML page (a Jinja2 template of its own, self-contained), a PDF (fpdf2 with a CJK font), and
the short text robots get.

The read model is like those of :mod:`monitor.services`: it asks ``monitor.view`` on the organisation first and
counts only the items sighted by the sources of that organisation's subtree. An item belongs to the local day
it was fetched on (as in :mod:`monitor.radar`); the report compares the day with the seven days before it.

Errors: :mod:`core.errors` for bad input (an unreadable day, an unknown organisation, no permission), and one
of the monitor's own (:class:`monitor.errors.MonitorError`)::

    MonitorError
    └── ReportFontMissing   no CJK font for the PDF (the HTML and the robots' text need none): 409, one line
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import iso_local, local_date, now
from core.errors import InvalidInput
from core.settings import get_settings
from monitor.errors import MonitorError
from monitor.models import Alert, Burst, Item, Rule, Sighting, Source, Story
from monitor.needs import NEEDS
from monitor.negativity import NEGATIVE_THRESHOLD
from monitor.radar import RISING
from monitor.services import _org_for
from monitor.settings import MonitorSettings, get_monitor_settings
from publisher.domain.models import Organization
from publisher.services.common import subtree
from publisher.services.people import Principal

BEFORE_DAYS = 7  # the day is compared with this many days before it
TOP_STORIES = 10
ITEMS_MAX = 50_000  # the newest items of the eight days read: a report stays bounded whatever the volume
LIST_MAX = 100  # alerts and bursts listed
SUMMARY_TITLE_CHARS = 60
TEMPLATES = Path(__file__).parent / "templates"
# Where distributions put a CJK font (the face index matters in a .ttc collection: Noto Sans CJK's SC is 2).
FONT_CANDIDATES: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # Debian/Ubuntu fonts-noto-cjk
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 2),  # Arch, Alpine
    ("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc", 2),  # Fedora
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),  # fonts-wqy-microhei
)


class ReportFontMissing(MonitorError):
    """No CJK font to draw the PDF with (a server's configuration, not the request's fault)."""

    status_code = 409  # a 4xx, as every user-facing error here: the page says what the server lacks


# ------------------------------------------------------------------------------------------- the day


def parse_day(text: str | None) -> date | None:
    """``YYYY-MM-DD`` as a date (None: not given); :class:`InvalidInput` with the reason otherwise."""
    if text is None or not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"a day is YYYY-MM-DD, not {text.strip()[:40]!r}") from None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants a local calendar day starts and ends at (end excluded)."""
    tz = get_settings().tz
    start = datetime.combine(day, time(), tz)
    end = datetime.combine(day + timedelta(days=1), time(), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


# ------------------------------------------------------------------------------------------ read model


def daily_report(
    session: Session, actor: Principal, *, organization: int | str | None = None, day: date | None = None
) -> dict[str, Any]:
    """The report of ``organization`` (default: the actor's only one) and its subtree for ``day`` (default:
    today, local): volume, negativity against the 7 days before, top stories, needs and their trends, alerts
    and bursts of the day."""
    org = _org_for(session, actor, organization, "monitor.view")
    today = local_date(now())
    day = day or today
    if day > today:
        raise InvalidInput(f"{day.isoformat()} has not come yet (today is {today.isoformat()})")
    if day < today - timedelta(days=3660):
        raise InvalidInput(f"{day.isoformat()} is more than ten years ago")
    orgs = subtree(session, [org.id])
    first = day - timedelta(days=BEFORE_DAYS)
    start, _ = day_bounds(first)
    day_start, end = day_bounds(day)
    rows = session.execute(
        select(Item.id, Item.fetched_at, Item.negativity, Item.scores, Item.story_id, Sighting.source_id)
        .join(Sighting, Sighting.item_id == Item.id)
        .join(Source, Source.id == Sighting.source_id)
        .where(Source.organization_id.in_(orgs), Item.fetched_at >= start, Item.fetched_at < end)
        .order_by(Item.id.desc())
        .limit(ITEMS_MAX)
    ).all()
    days = BEFORE_DAYS + 1
    items_by_day: list[set[int]] = [set() for _ in range(days)]
    negativity: dict[int, float] = {}
    needs_by_day: dict[str, list[set[int]]] = {n.key: [set() for _ in range(days)] for n in NEEDS}
    story_items: dict[int, set[int]] = defaultdict(set)
    story_sources: dict[int, set[int]] = defaultdict(set)
    sources: set[int] = set()
    for item_id, fetched_at, score, scores, story_id, source_id in rows:
        at = (local_date(fetched_at) - first).days
        if not 0 <= at < days:
            continue
        items_by_day[at].add(item_id)
        negativity[item_id] = float(score or 0.0)
        for key in (scores or {}).get("needs") or {}:
            if key in needs_by_day:
                needs_by_day[key][at].add(item_id)
        if at == days - 1:
            sources.add(source_id)
            story_items[story_id].add(item_id)
            story_sources[story_id].add(source_id)
    the_day = items_by_day[-1]
    before = set().union(*items_by_day[:-1])
    titles = dict(session.execute(select(Story.id, Story.title).where(Story.id.in_(story_items))).all())
    top = sorted(story_items, key=lambda s: (-len(story_sources[s]), -len(story_items[s]), s))[:TOP_STORIES]
    return {
        "organization": {"id": org.id, "name": org.name},
        "organizations": len(orgs),
        "day": day.isoformat(),
        "timezone": get_settings().timezone,
        "complete": day < today,  # today's report grows until midnight
        "generated_at": iso_local(now()),
        "volume": {"items": len(the_day), "stories": len(story_items), "sources": len(sources)},
        "volume_by_day": [
            {"day": (first + timedelta(days=i)).isoformat(), "items": len(s)} for i, s in enumerate(items_by_day)
        ],
        "negativity": {**_negativity(the_day, negativity), "before": _negativity(before, negativity)},
        "top_stories": [
            {"id": s, "title": titles.get(s, ""), "items": len(story_items[s]), "sources": len(story_sources[s])}
            for s in top
        ],
        "needs": [_need(n.key, n.label, needs_by_day[n.key]) for n in NEEDS],
        "alerts": _alerts(session, orgs, day_start, end),
        "bursts": _bursts(session, orgs, day_start, end),
    }


def _negativity(ids: set[int], scores: dict[int, float]) -> dict[str, Any]:
    values = [scores[i] for i in ids]
    negative = sum(1 for v in values if v >= NEGATIVE_THRESHOLD)
    return {
        "items": len(values),
        "negative": negative,
        "share": _ratio(negative, len(values)),
        "mean": round(sum(values) / len(values), 4) if values else 0.0,
    }


def _need(key: str, label: str, by_day: list[set[int]]) -> dict[str, Any]:
    counts = [len(s) for s in by_day]
    before = counts[:-1]
    mean = sum(before) / len(before)
    # the radar's rule for "rising", so the report and the radar page never disagree about one need
    rising = counts[-1] >= 3 and counts[-1] >= RISING * max(mean, 1.0)
    return {
        "key": key,
        "label": label,
        "count": counts[-1],
        "before_mean": round(mean, 2),
        "counts": counts,
        "rising": rising,
    }


def _alerts(session: Session, orgs: set[int], start: datetime, end: datetime) -> dict[str, Any]:
    q = (
        select(Alert, Rule.name, Item.title, Item.link)
        .join(Rule, Rule.id == Alert.rule_id)
        .join(Item, Item.id == Alert.item_id)
        .where(Rule.organization_id.in_(orgs), Alert.created_at >= start, Alert.created_at < end)
        .order_by(Alert.id)
    )
    rows = session.execute(q.limit(LIST_MAX + 1)).all()
    return {
        "more": len(rows) > LIST_MAX,
        "rows": [
            {
                "id": a.id,
                "rule": rule,
                "title": title,
                "link": link,
                "story_id": a.story_id,
                "at": iso_local(a.created_at),
            }
            for a, rule, title, link in rows[:LIST_MAX]
        ],
    }


def _bursts(session: Session, orgs: set[int], start: datetime, end: datetime) -> dict[str, Any]:
    q = (
        select(Burst)
        .where(Burst.organization_id.in_(orgs), Burst.hour_start >= start, Burst.hour_start < end)
        .order_by(Burst.hour_start, Burst.id)
    )
    found = list(session.scalars(q.limit(LIST_MAX + 1)))
    return {
        "more": len(found) > LIST_MAX,
        "rows": [
            {
                "id": b.id,
                "key": b.key,
                "hour": iso_local(b.hour_start),
                "count": b.count,
                "baseline": round(b.baseline, 1),
                "zscore": round(b.zscore, 1),
                "terms": list(b.terms or []),
                "message": b.message,
            }
            for b in found[:LIST_MAX]
        ],
    }


def organization_name(session: Session, org_id: int) -> str:
    """An organisation's name for a message (its id when it is gone)."""
    org = session.get(Organization, org_id)
    return org.name if org else str(org_id)


# ------------------------------------------------------------------------------------------ renderings


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _signed_points(now_share: float, before_share: float) -> str:
    return f"{(now_share - before_share) * 100:+.1f} 个百分点"


_env = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True
)
_env.filters["percent"] = _percent


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (styles inline, no scripts, no external assets)."""
    neg = report["negativity"]
    change = _signed_points(neg["share"], neg["before"]["share"])
    return _env.get_template("daily_report.html").render(r=report, change=change)


def report_link(settings: MonitorSettings, report: dict[str, Any]) -> str:
    """The address of the report's HTML page on the API (signed-in people open it)."""
    base = settings.report_base_url.rstrip("/")
    return f"{base}/monitor/report.html?org={report['organization']['id']}&day={report['day']}"


def summary_text(report: dict[str, Any], link: str = "") -> str:
    """The few lines a robot gets: the figures, rising needs, the top stories, and the link to the page."""
    vol, neg = report["volume"], report["negativity"]
    lines = [
        f"【舆情日报】{report['organization']['name']} {report['day']}",
        f"信息 {vol['items']} 条，事件 {vol['stories']} 个，来源 {vol['sources']} 个",
        f"负面占比 {_percent(neg['share'])}（前7日 {_percent(neg['before']['share'])}，"
        f"{_signed_points(neg['share'], neg['before']['share'])}）",
    ]
    rising = [n for n in report["needs"] if n["rising"]]
    if rising:
        lines.append(
            "诉求上升：" + "；".join(f"{n['label']} {n['count']}（前7日均 {n['before_mean']}）" for n in rising)
        )
    for i, story in enumerate(report["top_stories"][:5], 1):
        title = story["title"] or "（无标题）"
        title = (
            title if len(title) <= SUMMARY_TITLE_CHARS else title[: SUMMARY_TITLE_CHARS - 1] + "…"
        )  # the page has it whole
        lines.append(f"{i}. {title}（{story['sources']} 个来源，{story['items']} 条）")
    lines.append(f"预警 {len(report['alerts']['rows'])} 条，突发 {len(report['bursts']['rows'])} 次")
    if link:
        lines.append(f"全文：{link}")
    return "\n".join(lines)


def find_font(settings: MonitorSettings) -> tuple[str, int]:
    """The CJK font file for the PDF and its face index; :class:`ReportFontMissing` with what to do."""
    if settings.report_font:
        path = Path(settings.report_font)
        if not path.is_file():
            raise ReportFontMissing(f"MATRIX_MONITOR_REPORT_FONT: no font file at {path}")
        return str(path), settings.report_font_index if path.suffix.lower() == ".ttc" else 0
    for candidate, index in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate, index
    raise ReportFontMissing(
        "no CJK font for the PDF: install fonts-noto-cjk or set MATRIX_MONITOR_REPORT_FONT (the HTML page works)"
    )


def render_pdf(report: dict[str, Any], settings: MonitorSettings | None = None) -> bytes:
    """The report as a PDF (A4, the CJK font found by :func:`find_font`)."""
    settings = settings or get_monitor_settings()
    font, index = find_font(settings)
    pdf = FPDF(format="A4")
    pdf.set_title(f"舆情日报 {report['organization']['name']} {report['day']}")
    pdf.set_creator("media-matrix")
    try:
        pdf.add_font("cjk", fname=font, collection_font_number=index)
    except Exception as exc:  # fpdf2/fontTools raise many kinds on a file that is not a usable font
        raise ReportFontMissing(f"the font {font} cannot be used for the PDF ({type(exc).__name__})") from None
    pdf.add_page()
    width = pdf.epw

    def heading(text: str) -> None:
        pdf.ln(3)
        pdf.set_font("cjk", size=13)
        pdf.multi_cell(width, 8, text, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("cjk", size=10)

    def line(text: str) -> None:
        pdf.multi_cell(width, 6, text, new_x="LMARGIN", new_y="NEXT")

    def table(header: tuple[str, ...], rows: list[tuple[str, ...]], widths: tuple[int, ...]) -> None:
        # headings shaded, not bold: one font file holds the regular face only
        heads = FontFace(emphasis="", fill_color=(235, 235, 235))
        with pdf.table(col_widths=widths, text_align="LEFT", line_height=6, headings_style=heads) as grid:
            for cells in (header, *rows):
                grid_row = grid.row()
                for cell in cells:
                    grid_row.cell(cell)

    pdf.set_font("cjk", size=16)
    pdf.multi_cell(width, 10, f"舆情日报：{report['organization']['name']}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    line(f"{report['day']}（{report['timezone']}）  生成于 {report['generated_at']}")
    vol, neg = report["volume"], report["negativity"]
    heading("概况")
    line(f"信息 {vol['items']} 条，事件 {vol['stories']} 个，来源 {vol['sources']} 个")
    line(
        f"负面 {neg['negative']} 条，占比 {_percent(neg['share'])}，平均负面度 {neg['mean']:.3f}；前7日占比 "
        f"{_percent(neg['before']['share'])}（{_signed_points(neg['share'], neg['before']['share'])}），"
        f"平均 {neg['before']['mean']:.3f}"
    )
    line("每日信息量：" + "，".join(f"{d['day'][5:]} {d['items']}" for d in report["volume_by_day"]))
    heading("热点事件")
    stories = [(str(i), s["title"] or "（无标题）", str(s["sources"]), str(s["items"]))
               for i, s in enumerate(report["top_stories"], 1)]  # fmt: skip
    table(("#", "标题", "来源", "条数"), stories or [("-", "无", "0", "0")], (8, 120, 20, 20))
    heading("职工诉求")
    needs = [(n["label"], str(n["count"]), f"{n['before_mean']}", "上升" if n["rising"] else "")
             for n in report["needs"]]  # fmt: skip
    table(("诉求", "当日", "前7日均", "趋势"), needs, (60, 30, 40, 30))
    heading(f"预警（{len(report['alerts']['rows'])}）")
    for a in report["alerts"]["rows"]:
        line(f"{a['at'][11:16]}  规则「{a['rule']}」：{a['title']}")
    if not report["alerts"]["rows"]:
        line("无")
    heading(f"突发（{len(report['bursts']['rows'])}）")
    for b in report["bursts"]["rows"]:
        line(f"{b['hour'][11:16]}  {b['key']}：{b['count']} 条（基线 {b['baseline']}，z={b['zscore']}）"
             f" {'、'.join(b['terms'])}")  # fmt: skip
    if not report["bursts"]["rows"]:
        line("无")
    return bytes(pdf.output())
