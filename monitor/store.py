"""Storing what polls found, set-based: duplicates become sightings, new items join a story or start one, the
rules in scope are matched, and alerts are made once per story, rule and window.

One :class:`Batch` per write transaction, for the entries of any number of sources (one poll, or a task's poll
of many sources). Its reads are one query per kind for the whole batch: the stored items its entries may
duplicate (by content hash, and by link with the same title), the rule hits those items have, the recent items
sharing the entries' LSH bands (:mod:`monitor.neardup`) and their signatures. Its writes are one statement per
table — stories, items (their new ids read back with ``RETURNING``), story counts, bands, sightings, rule hits —
instead of an ORM flush per item: profiling a 1,000-feed cycle showed those per-item round trips costing most
of each poll, under the write lock that every pool process waits for on SQLite. Alerts, a handful per batch, go
one by one afterwards, each in its own savepoint with its notifications and robot sends.

Entries meet each other inside a batch as they would one poll after another: :meth:`Batch.plan` takes sources
in order and an entry sees the items planned before it (its exact duplicates, its near duplicates' stories).

Races: another worker may store the same content at the same moment (the unique content hash or rule hit meets
them, on PostgreSQL; SQLite's write lock, taken at BEGIN, rules it out). :func:`store` then rolls the batch's
savepoint back, reads again — the other worker's rows are visible by then — and plans once more.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import TextClause, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.clock import now
from core.errors import InvalidInput
from core.notify import notify
from moderation.normalize import Normalized
from monitor import alerting, neardup, query
from monitor.models import Alert, Item, LshBand, Rule, RuleHit, Sighting, Source, Story
from monitor.parse import Entry
from monitor.settings import MonitorSettings
from publisher.services.common import holders, subtree

log = logging.getLogger(__name__)

CANDIDATES = 200  # items compared per new entry (the most recent sharing a band)
PER_BAND = 4  # newest rows read per LSH band: 25 bands (threshold 0.5) x 4, half of CANDIDATES per entry
BANDS_PER_QUERY = 200  # bands read by one UNION ALL (SQLite allows 500 parts to a compound SELECT)
PG_BANDS_PER_QUERY = 5_000  # bands read by one LATERAL join on PostgreSQL (one array parameter)
IN_CHUNK = 500  # values in one IN (...) list: well under SQLite's and PostgreSQL's bound-parameter limits
RACE_TRIES = 3  # plans of one batch before a duplicate-key error is raised


@dataclass
class Scored:
    """One entry a source had not sighted before, with everything scoring found (no IO went into it)."""

    entry: Entry
    key: str  # the source's own key of the entry (text.entry_key)
    content_hash: str
    link_hash: str
    signature: np.ndarray
    negativity: float
    scores: dict[str, Any]
    norm: Normalized  # title + text as normalised for scoring; the rules match on the same


@dataclass
class Outcome:
    """What storing did for one source (the poll's outcome adds these counts)."""

    new_items: int = 0
    sightings: int = 0
    rule_hits: int = 0
    alerts: int = 0


@dataclass
class _Stored:
    """An item the batch knows: stored before, or planned by this batch (negative ids until written)."""

    id: int
    story_id: int
    source_id: int
    title: str
    text: str
    link: str
    content_hash: str
    link_hash: str


@dataclass
class _Plan:
    source_id: int
    outcome: Outcome
    sightings: list[tuple[_Stored, str, str]] = field(default_factory=list)  # item, entry key, link


_ITEM_COLUMNS = (
    Item.id,
    Item.story_id,
    Item.source_id,
    Item.title,
    Item.text,
    Item.link,
    Item.content_hash,
    Item.link_hash,
)
# Core tables for the plain executemany writes (the ORM's bulk path costs a Python round per row and column)
_stories, _bands, _sightings, _rule_hits = Story.__table__, LshBand.__table__, Sighting.__table__, RuleHit.__table__


@functools.cache
def _bands_sql(n: int) -> TextClause:
    """``n`` bands' newest rows in one statement: a UNION ALL of one short index range per band. Written as
    text, built once per ``n``: as expression objects, 200 subqueries a statement cost more Python than the
    whole rest of a poll (profiled: SQLAlchemy's column proxies and cache keys, 45 s of a 50 s chunk)."""
    table = LshBand.__tablename__
    part = (
        "SELECT * FROM (SELECT id, band_key, item_id FROM {table} WHERE band_key = :k{i} AND created_at >= :since "
        "ORDER BY id DESC LIMIT :per) AS b{i}"
    )
    sql = " UNION ALL ".join(part.format(table=table, i=i) for i in range(n))
    return text(sql).bindparams(bindparam("since", type_=LshBand.__table__.c.created_at.type))


# PostgreSQL: each band one short range of (band_key, id) through a LATERAL subquery, the keys one array
_PG_BANDS_SQL = text(
    "SELECT b.id, b.band_key, b.item_id FROM unnest(CAST(:keys AS varchar[])) AS k(key) CROSS JOIN LATERAL "
    "(SELECT id, band_key, item_id FROM monitor_lsh_bands WHERE band_key = k.key AND created_at >= :since "
    "ORDER BY id DESC LIMIT :per) AS b"
).bindparams(bindparam("since", type_=LshBand.__table__.c.created_at.type))


def _chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


class RuleSet:
    """The enabled rules, parsed once, with the organisations each covers; :meth:`for_source` picks a
    source's (its organisation in the rule's subtree, the rule's listed sources and tags)."""

    def __init__(self, session: Session) -> None:
        self.rules: list[tuple[Rule, query.Node, set[int]]] = []
        covers: dict[int, set[int]] = {}
        for rule in session.scalars(select(Rule).where(Rule.enabled.is_(True)).order_by(Rule.id)):
            try:
                node = query.parse(rule.query)
            except InvalidInput:  # queries are checked when a rule is written; one broken since is skipped
                log.warning("monitor rule %s has a query that no longer parses", rule.id)
                continue
            if rule.organization_id not in covers:
                covers[rule.organization_id] = subtree(session, [rule.organization_id])
            self.rules.append((rule, node, covers[rule.organization_id]))

    def for_source(self, source: Source) -> list[tuple[Rule, query.Node]]:
        """The rules whose scope covers ``source``."""
        chosen = []
        for rule, node, orgs in self.rules:
            scope = rule.scope or {}
            if source.organization_id not in orgs:
                continue
            if scope.get("sources") and source.id not in scope["sources"]:
                continue
            if scope.get("tags") and not set(scope["tags"]) & set(source.tags or []):
                continue
            chosen.append((rule, node))
        return chosen


class Batch:
    """The reads, the plan and the writes of one batch of scored entries (see the module docstring)."""

    def __init__(self, session: Session, scored: Sequence[Scored], settings: MonitorSettings) -> None:
        self.session, self.settings = session, settings
        self.threshold = settings.cluster_threshold
        self.t = now()
        self._serial = 0
        self.by_hash: dict[str, _Stored] = {}
        self.by_link: dict[tuple[str, str], _Stored] = {}
        hashes = list({s.content_hash for s in scored})
        links = list({s.link_hash for s in scored if s.link_hash})
        for chunk in _chunks(hashes):
            for row in session.execute(select(*_ITEM_COLUMNS).where(Item.content_hash.in_(chunk))):
                self.by_hash[row.content_hash] = _Stored(*row)
        link_rows = []
        for chunk in _chunks(links):
            link_rows += session.execute(select(*_ITEM_COLUMNS).where(Item.link_hash.in_(chunk))).all()
        for row in sorted(link_rows, key=lambda r: r.id):  # the first stored item with that link and title
            self.by_link.setdefault((row.link_hash, row.title), _Stored(*row))
        # rule hits the stored items have (an item a batch stores has none yet; it adds its own as it plans)
        self.hits: set[tuple[int, int]] = set()
        stored_ids = list({i.id for i in (*self.by_hash.values(), *self.by_link.values())})
        for chunk in _chunks(stored_ids):
            rows = session.execute(select(RuleHit.rule_id, RuleHit.item_id).where(RuleHit.item_id.in_(chunk)))
            self.hits.update((rule_id, item_id) for rule_id, item_id in rows)
        self.keys = {id(s): neardup.band_keys(s.signature, self.threshold) for s in scored}
        self.bands: dict[str, deque[tuple[int, int]]] = {}  # band key -> (item id, story id), newest first
        self.signatures: dict[int, np.ndarray] = {}
        self._read_bands(list({k for keys in self.keys.values() for k in keys}))
        # the plan, written by write()
        self.plans: list[_Plan] = []
        self.new_stories: dict[int, dict[str, Any]] = {}  # placeholder id -> row
        self.grown: Counter[int] = Counter()  # stored story id -> items this batch adds to it
        self.new_items: list[tuple[_Stored, Scored]] = []
        self.new_hits: list[tuple[int, _Stored, dict[str, Any], Outcome]] = []
        self.alerts_wanted: list[tuple[Rule, _Stored, Outcome]] = []

    def _read_bands(self, wanted: list[str]) -> None:
        """The recent items sharing the wanted bands and their signatures: on each band its newest
        PER_BAND rows, so an entry meets at most about CANDIDATES items over its bands, and one very large story
        (a band shared by thousands of its items) neither fills the read nor crowds out the other bands. Each
        band is one short index range (its newest rows first); signatures are read once per distinct item."""
        if not wanted:
            return
        since = self.t - timedelta(hours=self.settings.cluster_window_h)
        rows: list[Any] = []
        if self.session.get_bind().dialect.name == "postgresql":
            # one array parameter and one small plan: PostgreSQL planned each 200-part UNION ALL anew (and
            # psycopg split its 400 parameters), most of a poll's time at 1,000 feeds
            for chunk in _chunks(wanted, PG_BANDS_PER_QUERY):
                params = {"keys": list(chunk), "since": since, "per": PER_BAND}
                rows += self.session.execute(_PG_BANDS_SQL, params).all()
        else:
            for chunk in _chunks(wanted, BANDS_PER_QUERY):
                params = {f"k{i}": key for i, key in enumerate(chunk)}
                rows += self.session.execute(_bands_sql(len(chunk)), {**params, "since": since, "per": PER_BAND}).all()
        rows.sort(key=lambda r: r[0], reverse=True)  # newest first on every band
        stories: dict[int, int] = {}
        ids = list({r[2] for r in rows})
        for chunk in _chunks(ids):
            for item_id, story_id, signature in self.session.execute(
                select(Item.id, Item.story_id, Item.signature).where(Item.id.in_(chunk), Item.signature.is_not(None))
            ):
                self.signatures[item_id] = neardup.from_bytes(signature)
                stories[item_id] = story_id
        for _band_id, key, item_id in rows:
            if item_id in stories:
                self.bands.setdefault(key, deque()).append((item_id, stories[item_id]))

    def _placeholder(self) -> int:
        self._serial -= 1
        return self._serial

    # ------------------------------------------------------------------------------------------ planning

    def plan(
        self, source: Source, scored: Iterable[Scored], rules: Sequence[tuple[Rule, query.Node]], outcome: Outcome
    ) -> None:
        """Plan one source's entries: a sighting each; a new item (in a story) for what is not stored yet; the
        hits of ``rules`` each item does not have yet. Pure: nothing is written until :meth:`write`."""
        plan = _Plan(source.id, outcome)
        self.plans.append(plan)
        for s in scored:
            item = self.by_hash.get(s.content_hash)
            if item is None and s.link_hash:
                item = self.by_link.get((s.link_hash, s.entry.title))
            if item is None:
                item = self._plan_item(source, s)
                outcome.new_items += 1
            # every entry this source carries is sighted once (scoring left out those it had)
            plan.sightings.append((item, s.key, s.entry.link))
            if item.source_id != source.id:
                outcome.sightings += 1
            for rule, node in rules:
                if (rule.id, item.id) in self.hits:
                    continue
                m = query.match(node, s.norm)
                if m is None:
                    continue
                self.hits.add((rule.id, item.id))
                matched = {"terms": list(m.terms), "spans": [list(sp) for sp in m.spans]}
                self.new_hits.append((rule.id, item, matched, outcome))
                outcome.rule_hits += 1
                self.alerts_wanted.append((rule, item, outcome))

    def _plan_item(self, source: Source, s: Scored) -> _Stored:
        story_id = self._story_of(s)
        if story_id is None:
            story_id = self._placeholder()
            self.new_stories[story_id] = {
                "title": s.entry.title or s.entry.text[:100],
                "item_count": 0,
                "first_seen_at": self.t,
                "last_seen_at": self.t,
            }
        if story_id < 0:
            self.new_stories[story_id]["item_count"] += 1
        else:
            self.grown[story_id] += 1
        item = _Stored(
            id=self._placeholder(),
            story_id=story_id,
            source_id=source.id,
            title=s.entry.title,
            text=s.entry.text,
            link=s.entry.link,
            content_hash=s.content_hash,
            link_hash=s.link_hash,
        )
        self.new_items.append((item, s))
        self.by_hash.setdefault(item.content_hash, item)
        if item.link_hash:
            self.by_link.setdefault((item.link_hash, item.title), item)
        self.signatures[item.id] = s.signature
        for key in self.keys[id(s)]:
            self.bands.setdefault(key, deque()).appendleft((item.id, story_id))
        return item

    def _story_of(self, s: Scored) -> int | None:
        """The story of the most similar recent item sharing a band, if similar enough (the first of equals)."""
        candidates: dict[int, int] = {}
        for key in self.keys[id(s)]:
            for item_id, story_id in self.bands.get(key, ()):
                if len(candidates) >= CANDIDATES:
                    break
                candidates.setdefault(item_id, story_id)
        size = len(s.signature)
        ids = [i for i in candidates if len(self.signatures[i]) == size]
        if not ids:
            return None
        # one comparison for all candidates: the share of equal MinHash values is the Jaccard estimate
        sims = np.count_nonzero(np.stack([self.signatures[i] for i in ids]) == s.signature, axis=1) / size
        best = int(np.argmax(sims))
        if sims[best] <= 0 or sims[best] < self.threshold:
            return None
        return candidates[ids[best]]

    # ------------------------------------------------------------------------------------------- writing

    def write(self) -> None:
        """Write the plan: one statement per table (module docstring)."""
        session, t = self.session, self.t
        story_ids: dict[int, int] = {}
        if self.new_stories:
            placeholders = list(self.new_stories)
            made = session.scalars(
                insert(Story).returning(Story.id, sort_by_parameter_order=True),
                [self.new_stories[p] for p in placeholders],
            ).all()
            story_ids = dict(zip(placeholders, made, strict=True))
        if self.grown:
            session.execute(
                update(_stories)
                .where(_stories.c.id == bindparam("story"))
                .values(item_count=_stories.c.item_count + bindparam("added"), last_seen_at=bindparam("at")),
                [{"story": story, "added": n, "at": t} for story, n in self.grown.items()],
            )
        if self.new_items:
            rows = []
            for item, s in self.new_items:
                item.story_id = story_ids.get(item.story_id, item.story_id)
                rows.append(_item_row(item, s, t))
            made = session.scalars(insert(Item).returning(Item.id, sort_by_parameter_order=True), rows).all()
            for (item, _s), item_id in zip(self.new_items, made, strict=True):
                item.id = item_id
            bands = [
                {"band_key": key, "item_id": item.id, "created_at": t}
                for item, s in self.new_items
                for key in self.keys[id(s)]
            ]
            session.execute(_bands.insert(), bands)
        sightings = [
            {"item_id": item.id, "source_id": plan.source_id, "entry_key": key, "link": link, "seen_at": t}
            for plan in self.plans
            for item, key, link in plan.sightings
        ]
        if sightings:
            session.execute(_sightings.insert(), sightings)
        if self.new_hits:
            session.execute(
                _rule_hits.insert(),
                [
                    {"rule_id": rule_id, "item_id": item.id, "story_id": item.story_id, "matched": m, "created_at": t}
                    for rule_id, item, m, _outcome in self.new_hits
                ],
            )

    def alert(self) -> None:
        """One alert per story per rule per window (the unique key decides, so two workers cannot both alert):
        told to the rule's owner (or the organisation's monitors) and queued on each robot that takes it."""
        if not self.alerts_wanted:
            return
        session, settings = self.session, self.settings
        window = window_start(now(), settings.alert_window_h)
        rule_ids = list({rule.id for rule, _item, _o in self.alerts_wanted})
        story_ids = list({item.story_id for _rule, item, _o in self.alerts_wanted})
        done: set[tuple[int, int]] = set()
        for chunk in _chunks(story_ids):
            rows = session.execute(
                select(Alert.rule_id, Alert.story_id).where(
                    Alert.window_start == window, Alert.rule_id.in_(rule_ids), Alert.story_id.in_(chunk)
                )
            )
            done.update((rule_id, story_id) for rule_id, story_id in rows)
        recipients_of: dict[int, list[int | None]] = {}
        for rule, item, outcome in self.alerts_wanted:
            if (rule.id, item.story_id) in done:
                continue
            done.add((rule.id, item.story_id))
            message = f"monitor rule {rule.name!r} matched: {item.title or item.text[:80]} ({item.link or 'no link'})"
            alert = Alert(
                rule_id=rule.id, story_id=item.story_id, item_id=item.id, window_start=window, message=message
            )
            try:
                with session.begin_nested():
                    session.add(alert)
            except IntegrityError:  # another worker alerted this story for this rule a moment ago
                continue
            if rule.id not in recipients_of:
                owners = [rule.created_by] if rule.created_by is not None else None
                recipients_of[rule.id] = owners or holders(session, ["monitor"], rule.organization_id) or [None]
            notify(session, recipients_of[rule.id], "monitor.alert", message[:2000])
            # and once on each robot and mailbox that takes the rule's alerts (the unique send key; after commit)
            alerting.queue_sends(session, alert, rule, settings)
            outcome.alerts += 1


def _item_row(item: _Stored, s: Scored, t: datetime) -> dict[str, Any]:
    origin = s.entry.origin or {}
    return {
        "story_id": item.story_id,
        "source_id": item.source_id,
        "link": s.entry.link,
        "link_hash": s.link_hash,
        "content_hash": s.content_hash,
        "title": s.entry.title,
        "summary_html": s.entry.summary_html,
        "text": s.entry.text,
        "author": s.entry.author,
        "published_at": s.entry.published_at,
        "fetched_at": t,
        "signature": neardup.to_bytes(s.signature),
        "negativity": s.negativity,
        "scores": s.scores,
        "delivery_id": origin.get("delivery_id"),
        "account_id": origin.get("account_id"),
        "post_id": origin.get("post_id"),
    }


def window_start(t: datetime, hours: float) -> datetime:
    """The start of the alert window ``t`` falls in (windows of ``hours``, from the epoch)."""
    width = max(1, int(hours * 3600))
    return datetime.fromtimestamp(int(t.timestamp()) // width * width, t.tzinfo)


def store(
    session: Session,
    work: Sequence[tuple[Source, Sequence[Scored]]],
    settings: MonitorSettings,
    rules: RuleSet | None = None,
) -> list[Outcome]:
    """Store the scored entries of each source (in order) in the caller's transaction; one outcome per source.

    The writes are one savepoint: a duplicate key met there (another worker stored the same content a moment
    ago) rolls them back, and the batch is read and planned again, at most RACE_TRIES times.
    """
    rules = rules or RuleSet(session)
    everything = [s for _source, scored in work for s in scored]
    for attempt in range(1, RACE_TRIES + 1):
        batch = Batch(session, everything, settings)
        outcomes = []
        for source, scored in work:
            outcome = Outcome()
            batch.plan(source, scored, rules.for_source(source), outcome)
            outcomes.append(outcome)
        try:
            with session.begin_nested():
                batch.write()
        except IntegrityError:
            if attempt == RACE_TRIES:
                raise
            log.info("monitor: a batch met another worker's rows (try %d); reading it again", attempt)
            continue
        batch.alert()
        return outcomes
    raise AssertionError("unreachable")  # the loop returns or raises
