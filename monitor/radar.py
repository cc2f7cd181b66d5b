"""The workers'-needs radar (职工诉求): how often each need shows, day by day and per organisation.

A read model like those in :mod:`monitor.services`: it asks ``monitor.view`` first and counts only the items of
sources the actor may see. An item counts once per need it shows, on the day it was fetched (local time), for
the organisation of every source of the actor's that carried it (a story one city and the province both watch
counts for each of them). Comments on our own posts (:mod:`monitor.comments`) are counted once more per
account they were written under: "in whose comments" a need shows.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from core.clock import local_date, now
from core.errors import InvalidInput
from monitor.models import Item, Sighting, Source
from monitor.needs import NEEDS
from publisher.domain.models import Account, Organization
from publisher.services.people import Principal, require, visible_orgs

RADAR_DAYS_MAX = 90
RADAR_ITEMS_MAX = 50_000  # the newest items counted: a page's query stays bounded whatever the volume
RISING = 1.5  # the last day against the mean of the days before it: a need "rises" at this factor and ≥ 3 items


def _need_keys(session: Session) -> Any:
    """A table-valued expression of each item's need keys (``key``), lateral to ``Item``: SQLite's
    ``json_each`` or PostgreSQL's ``json_object_keys`` over ``scores -> 'needs'``."""
    if session.get_bind().dialect.name == "postgresql":
        return func.json_object_keys(Item.scores.op("->")("needs")).table_valued("key").render_derived().lateral()
    return func.json_each(Item.scores, "$.needs").table_valued("key")


def needs_radar(session: Session, actor: Principal, *, days: int = 14) -> dict[str, Any]:
    """Per need: a count per day over the last ``days`` days, its total, whether it rises; per organisation:
    the total per need. Days are the organisation's local calendar days, oldest first."""
    require(session, actor, "monitor.view")
    if not 1 <= days <= RADAR_DAYS_MAX:
        raise InvalidInput(f"days must be 1-{RADAR_DAYS_MAX}")
    today = local_date(now())
    dates = [today - timedelta(days=days - 1 - i) for i in range(days)]
    index = {d: i for i, d in enumerate(dates)}
    since = now() - timedelta(days=days + 1)  # a day more: the first local day may start before UTC's
    # the newest items of the period (a page's query stays bounded whatever the volume), then one row per item,
    # source and need: the needs' keys come out of the JSON in the database, so no item's scores are decoded here
    newest = select(Item.id).where(Item.fetched_at >= since).order_by(Item.id.desc()).limit(RADAR_ITEMS_MAX)
    keys = _need_keys(session)
    q = (
        select(Item.id, Item.fetched_at, keys.c.key, Source.organization_id, Item.account_id)
        .select_from(Item)
        .join(Sighting, Sighting.item_id == Item.id)
        .join(Source, Source.id == Sighting.source_id)
        .join(keys, true())
        .where(Item.id.in_(newest.scalar_subquery()))
        .order_by(Item.id.desc())  # newest first, as the organisations' order among equals has always been
    )
    allowed = visible_orgs(session, actor, "monitor.view")
    if allowed is not None:
        q = q.where(Source.organization_id.in_(allowed))
    series: dict[str, list[int]] = {n.key: [0] * days for n in NEEDS}
    by_org: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(series, 0))
    by_account: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(series, 0))
    counted: set[tuple[int, str]] = set()  # (item, need): an item carried by two sources counts once per day
    for item_id, fetched_at, key, org_id, account_id in session.execute(q):
        if key not in series:
            continue
        at = index.get(local_date(fetched_at))
        if at is None:
            continue
        if (item_id, key) not in counted:
            counted.add((item_id, key))
            series[key][at] += 1
            if account_id is not None:
                by_account[account_id][key] += 1
        by_org[org_id][key] += 1
    names = dict(session.execute(select(Organization.id, Organization.name).where(Organization.id.in_(by_org))).all())
    needs = []
    for need in NEEDS:
        counts = series[need.key]
        before = counts[:-1]
        baseline = sum(before) / len(before) if before else 0.0
        rising = counts[-1] >= 3 and counts[-1] >= RISING * max(baseline, 1.0)
        needs.append({"key": need.key, "label": need.label, "counts": counts, "total": sum(counts), "rising": rising})
    accounts = (
        {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(by_account)))} if by_account else {}
    )
    return {
        "days": [d.isoformat() for d in dates],
        "needs": needs,
        "organizations": [
            {"id": org_id, "name": names.get(org_id, str(org_id)), "needs": counts}
            for org_id, counts in sorted(by_org.items(), key=lambda kv: -sum(kv[1].values()))
        ],
        # needs in the comments on our own posts, per account they were written under
        "accounts": [
            {
                "id": account_id,
                "name": accounts[account_id].name if account_id in accounts else str(account_id),
                "kind": accounts[account_id].kind if account_id in accounts else "",
                "needs": counts,
            }
            for account_id, counts in sorted(by_account.items(), key=lambda kv: -sum(kv[1].values()))
        ],
    }
