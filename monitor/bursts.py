"""Bursts: an hour whose volume rises far over its own baseline, explained by the words that rose.

What is counted, per hour (UTC hours, the last ``burst_history_h`` of them as the baseline):

- ``rule:<id>``: the rule's hits;
- ``need:<org>:<need>``: items with that workers' need, from the sources of that organisation;
- ``story:<id>``: the story's new items (a story's baseline is usually nothing: a repost wave is the burst).

The baseline is an exponentially weighted mean and variance of the earlier hours (West's / Finch's incremental
EWMA, weight ``burst_alpha`` on the newest), and the hour bursts when its count is at least
``burst_min_count`` and ``(count - mean) / max(std, burst_min_std) >= burst_z``. Why EWMA and a z-score rather
than Kleinberg's automaton: the hourly series is short and per key, the EWMA needs two numbers per key and no
tuning of state costs, and its z-score is a figure a monitor can read; Kleinberg's PyPI packages are also
non-commercial or unlicensed. One burst per key and hour (the unique key), and none again for the same key
within ``burst_cooldown_h``. Rules and needs burst only once the monitor has ``burst_min_history_h`` of items
behind it: with no history every busy hour would look like a burst.

The terms that rose: jieba's TF-IDF keywords of the burst hour's items, kept when the share of the hour's items
that contain the word is at least ``RISE_RATIO`` times its share in the baseline hours (and at least 30 %).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import jieba.analyse
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.clock import now
from core.db import after_commit
from core.notify import notify
from monitor.alerting import channels_for
from monitor.models import AlertChannel, AlertSend, Burst, Item, Rule, RuleHit, Source
from monitor.needs import NEEDS
from monitor.queue import MonitorTask, enqueue
from monitor.settings import MonitorSettings
from publisher.services.common import holders

RISE_RATIO = 2.0
MIN_SHARE = 0.3
TERMS_KEPT = 5
TEXT_SAMPLE = 400  # items' texts read per side (burst hour, baseline) to find the terms
_WORD = re.compile(r"^[\u4e00-\u9fff]{2,}$|^[A-Za-z][A-Za-z0-9+]{2,}$")  # no numbers, no single characters


def ewma(history: Sequence[float], alpha: float) -> tuple[float, float]:
    """Exponentially weighted mean and standard deviation of ``history`` (oldest first)."""
    if not history:
        return 0.0, 0.0
    mean, var = float(history[0]), 0.0
    for x in history[1:]:
        diff = x - mean
        incr = alpha * diff
        mean += incr
        var = (1 - alpha) * (var + diff * incr)
    return mean, math.sqrt(max(var, 0.0))


def zscore(count: float, mean: float, std: float, min_std: float) -> float:
    """How many (floored) standard deviations ``count`` is above the baseline."""
    return (count - mean) / max(std, min_std)


def rising_terms(burst_texts: Sequence[str], baseline_texts: Sequence[str], k: int = TERMS_KEPT) -> list[str]:
    """The words of the burst's texts that rose against the baseline's (module docstring)."""
    if not burst_texts:
        return []
    candidates = jieba.analyse.extract_tags("\n".join(burst_texts), topK=40)
    terms = []
    for word in candidates:
        if not _WORD.match(word):
            continue
        share = sum(word in t for t in burst_texts) / len(burst_texts)
        before = sum(word in t for t in baseline_texts) / len(baseline_texts) if baseline_texts else 0.0
        if share >= MIN_SHARE and share >= RISE_RATIO * before:
            terms.append(word)
        if len(terms) == k:
            break
    return terms


def hour_of(t: datetime) -> datetime:
    """The start of ``t``'s UTC hour."""
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def detect(session: Session, settings: MonitorSettings, *, at: datetime | None = None) -> list[Burst]:
    """Find this hour's bursts, store each once, tell the owners and queue the robots (in the caller's
    transaction; the sends go out after commit). Returns the new bursts."""
    hour = hour_of(at or now())
    start = hour - timedelta(hours=settings.burst_history_h)
    earliest = session.scalar(select(func.min(Item.fetched_at)))
    seasoned = earliest is not None and earliest <= hour - timedelta(hours=settings.burst_min_history_h)
    org_of = dict(session.execute(select(Source.id, Source.organization_id)).all())
    series: dict[str, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))  # key -> bucket -> item ids
    for item_id, story_id, source_id, fetched_at, scores in session.execute(
        select(Item.id, Item.story_id, Item.source_id, Item.fetched_at, Item.scores).where(Item.fetched_at >= start)
    ):
        bucket = int((hour_of(fetched_at) - start).total_seconds() // 3600)
        series[f"story:{story_id}"][bucket].add(item_id)
        if seasoned:
            for need in (scores or {}).get("needs") or {}:
                series[f"need:{org_of.get(source_id)}:{need}"][bucket].add(item_id)
    if seasoned:
        for rule_id, item_id, created_at in session.execute(
            select(RuleHit.rule_id, RuleHit.item_id, RuleHit.created_at).where(RuleHit.created_at >= start)
        ):
            series[f"rule:{rule_id}"][int((hour_of(created_at) - start).total_seconds() // 3600)].add(item_id)
    current = settings.burst_history_h
    made = []
    for key, buckets in sorted(series.items()):
        count = len(buckets.get(current, ()))
        if count < settings.burst_min_count:
            continue
        mean, std = ewma([len(buckets.get(b, ())) for b in range(current)], settings.burst_alpha)
        z = zscore(count, mean, std, settings.burst_min_std)
        if z < settings.burst_z or _cooling(session, key, hour, settings):
            continue
        baseline_ids = [i for b in range(current) for i in buckets.get(b, ())]
        burst = _store(session, key, hour, count, mean, z, list(buckets[current]), baseline_ids)
        if burst is not None:
            made.append(burst)
    return made


def _cooling(session: Session, key: str, hour: datetime, settings: MonitorSettings) -> bool:
    since = hour - timedelta(hours=settings.burst_cooldown_h)
    return session.scalar(select(Burst.id).where(Burst.key == key, Burst.hour_start >= since).limit(1)) is not None


def _texts(session: Session, ids: list[int]) -> list[str]:
    rows = session.execute(select(Item.title, Item.text).where(Item.id.in_(ids[-TEXT_SAMPLE:]))).all()
    return [f"{title}\n{text[:2000]}" for title, text in rows]


def _store(
    session: Session, key: str, hour: datetime, count: int, mean: float, z: float, ids: list[int], before: list[int]
) -> Burst | None:
    terms = rising_terms(_texts(session, ids), _texts(session, before))
    kind, _, rest = key.partition(":")
    rule = session.get(Rule, int(rest)) if kind == "rule" else None
    org_id: int | None
    if rule is not None:
        org_id, label = rule.organization_id, f"规则「{rule.name}」"
    elif kind == "need":
        org_text, _, need = rest.partition(":")
        org_id = int(org_text) if org_text.isdigit() else None
        label = f"诉求「{next((n.label for n in NEEDS if n.key == need), need)}」"
    else:
        first = session.execute(
            select(Item.title, Source.organization_id).join(Source, Source.id == Item.source_id)
            .where(Item.story_id == int(rest)).order_by(Item.id).limit(1)
        ).first()  # fmt: skip
        org_id, label = (first[1], f"话题「{first[0][:40]}」") if first else (None, f"话题 {rest}")
    message = (
        f"舆情突增：{label}本小时 {count} 条，基线 {mean:.1f} 条/小时（z = {z:.1f}）；"
        f"上升词：{'、'.join(terms) or '（无）'}"
    )
    burst = Burst(key=key, hour_start=hour, organization_id=org_id, rule_id=rule.id if rule else None, count=count,
                  baseline=round(mean, 3), zscore=round(z, 3), terms=terms, message=message)  # fmt: skip
    try:
        with session.begin_nested():
            session.add(burst)
    except IntegrityError:  # another worker found it first
        return None
    if rule is not None and rule.created_by is not None:
        recipients = [rule.created_by]
    else:
        recipients = holders(session, ["monitor"], org_id) if org_id is not None else []
    notify(session, recipients or [None], "monitor.burst", message)
    _queue(session, burst, rule)
    return burst


def _queue(session: Session, burst: Burst, rule: Rule | None) -> None:
    """The burst on the robots and mailboxes: the rule's channels, else the organisation's general ones."""
    if rule is not None:
        channels = channels_for(session, rule)
    else:
        channels = [
            c
            for c in session.scalars(select(AlertChannel).where(AlertChannel.state == "active"))
            if c.organization_id == burst.organization_id and not (c.config or {}).get("rules")
        ]
    for channel in channels:
        send = AlertSend(burst_id=burst.id, channel_id=channel.id, title="舆情突增", body=burst.message, next_at=now())
        try:
            with session.begin_nested():
                session.add(send)
        except IntegrityError:
            continue
        after_commit(session, enqueue, MonitorTask.SEND_ALERT, send.id)
