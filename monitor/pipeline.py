"""One poll of one source: fetch, parse, store once, cluster into stories, score, match rules, alert.

The steps and where the transactions are (no transaction is held over the network or over scoring)::

    read the source (its URL, validators)                           short transaction
    fetch under the host's gate; parse unless 304                   no transaction
    drop entries this source has already sighted                    short read
    score what is left: moderation, negativity, needs, mentions     no transaction
    store: exact duplicates become sightings of the stored item,    one write transaction
           new items join a story (MinHash LSH) or start one,
           rules in scope are matched, alerts made once per story, rule and window
    record the outcome on the source: next poll, failures, pause    (same transaction)

Exact duplicates: the same entry key in one source (GUID, else link, else title + text); across sources the
same content hash, or the same link with the same title. Near duplicates: :mod:`monitor.neardup`.

A source of kind ``comments`` reads readers' comments on our own posts instead of a feed
(:mod:`monitor.comments`: the same steps, the platforms called outside any transaction); a comment's identity is
its GUID, not its words (two readers writing 欠薪了 are two items), and its cursors are saved with its items.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import moderation
from core.clock import now
from core.db import session_scope
from core.errors import InvalidInput
from core.notify import notify
from moderation.normalize import Normalized, normalize, normalize_term
from monitor import alerting, comments, neardup, needs, query, text
from monitor.errors import FeedError, FetchError, HostBusy, MonitorError, RetryLater
from monitor.fetch import HostGate, fetch_feed, host_gate, host_of, make_client
from monitor.models import Alert, Item, LshBand, Rule, RuleHit, Sighting, Source, Story
from monitor.negativity import negativity
from monitor.parse import Entry, parse_feed
from monitor.settings import MonitorSettings, get_monitor_settings
from publisher.domain.models import Organization
from publisher.services.common import holders, subtree

log = logging.getLogger(__name__)

SCREEN_CHARS = 2000  # characters of an item screened by moderation (its cost grows with the length)
HITS_KEPT = 10  # moderation hits kept per item (the evidence a monitor reads; the rest is counted)


@dataclass
class PollOutcome:
    """What one poll did: ``status`` is new | not_modified | failed | deferred | paused | skipped."""

    source_id: int
    status: str
    new_items: int = 0
    sightings: int = 0
    rule_hits: int = 0
    alerts: int = 0
    error: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (a task's return value)."""
        return dict(self.__dict__)


@dataclass
class _Scored:
    entry: Entry
    key: str
    content_hash: str
    link_hash: str
    signature: Any
    negativity: float
    scores: dict[str, Any]
    norm: Normalized  # title + text as normalised for scoring; the rules match on the same


def backoff_s(interval_s: float, failures: int, settings: MonitorSettings, rng: random.Random | None = None) -> float:
    """Delay after ``failures`` in a row: the interval doubled per failure, capped, with "equal jitter" (between
    half and all of it), so the failing feeds of one host do not all come back at the same moment."""
    base = min(settings.max_backoff_s, interval_s * 2 ** max(0, failures - 1))
    return base / 2 + (rng or random).uniform(0, base / 2)


def _spread(seconds: float, rng: random.Random | None = None) -> float:
    # up to 10 % later, so sources added together do not stay in step for ever
    return seconds * (1 + (rng or random).uniform(0, 0.1))


def poll_source(
    source_id: int,
    *,
    settings: MonitorSettings | None = None,
    client: httpx.Client | None = None,
    gate: HostGate | None = None,
) -> PollOutcome:
    """Poll one source now (if it is active): the whole pipeline of the module docstring."""
    settings = settings or get_monitor_settings()
    with session_scope() as session:
        source = session.get(Source, source_id)
        if source is None or source.state != "active":
            return PollOutcome(source_id, "skipped")
        url, etag, last_modified, kind = source.url, source.etag, source.last_modified, source.kind
    if kind == comments.KIND:
        return _poll_comments(source_id, settings)
    own_client = client is None
    client = client or make_client(settings)
    gate = gate or host_gate(settings)
    result = parsed = None
    error: MonitorError | None = None
    try:
        with gate.slot(host_of(url)):
            result = fetch_feed(client, url, settings, etag=etag, last_modified=last_modified)
        if not result.not_modified:
            parsed = parse_feed(
                result.content, content_type=result.content_type, url=result.url, max_entries=settings.items_per_fetch
            )
    except HostBusy as exc:
        with session_scope() as session:
            source = session.get(Source, source_id)
            if source is not None:
                source.next_poll_at = now() + timedelta(seconds=_spread(max(exc.retry_after or 0, 5.0)))
                source.claimed_until = None
        return PollOutcome(source_id, "deferred", error=str(exc))
    except MonitorError as exc:
        error = exc
    finally:
        if own_client:
            client.close()

    scored: list[_Scored] = []
    if parsed is not None and parsed.entries:
        scored = _score_new(source_id, parsed.entries)
    with session_scope() as session:
        source = _polled(session, source_id)
        if source is None:
            return PollOutcome(source_id, "skipped")
        if error is not None or result is None:  # no error and no result cannot happen: fetch raises or answers
            return _record_failure(session, source, error or FetchError("no answer"), settings)
        source.last_status = result.status
        source.etag, source.last_modified = result.etag, result.last_modified
        source.failures, source.last_error, source.last_success_at = 0, None, now()
        wait = max(source.interval_s, min(result.max_age_s or 0, settings.max_backoff_s))
        source.next_poll_at = now() + timedelta(seconds=_spread(wait))
        if parsed is None:
            return PollOutcome(source_id, "not_modified")
        source.parse_count += 1
        outcome = PollOutcome(source_id, "new", warnings=parsed.warnings)
        _store(session, source, scored, settings, outcome)
        return outcome


def _poll_comments(source_id: int, settings: MonitorSettings) -> PollOutcome:
    """One poll of a comments source: read (no transaction), score (none), store with the cursors (one)."""
    fetched = comments.fetch_comments(source_id, settings)
    if fetched is None:
        return PollOutcome(source_id, "skipped")
    scored = _score_new(source_id, fetched.entries) if fetched.entries else []
    with session_scope() as session:
        source = _polled(session, source_id)
        if source is None:
            return PollOutcome(source_id, "skipped")
        comments.save_cursors(session, source_id, fetched)
        if fetched.failure is not None:
            return _record_failure(session, source, fetched.failure, settings)
        source.failures, source.last_success_at = 0, now()
        # a poll that read some posts and not others succeeded; what failed is said, and kept on its cursor
        source.last_error = "; ".join(fetched.errors)[:2000] or None
        source.next_poll_at = now() + timedelta(seconds=_spread(source.interval_s))
        source.parse_count += 1
        outcome = PollOutcome(source_id, "new", warnings=fetched.errors)
        _store(session, source, scored, settings, outcome)
        return outcome


def _polled(session: Session, source_id: int) -> Source | None:
    """The source of a poll that has ended, its fetch counted and its claim released (None: it was deleted)."""
    source = session.get(Source, source_id)
    if source is not None:
        source.fetch_count += 1
        source.last_fetched_at = now()
        source.claimed_until = None
    return source


def _record_failure(session: Session, source: Source, error: MonitorError, settings: MonitorSettings) -> PollOutcome:
    source.failures += 1
    source.last_error = str(error)[:2000]
    retry_after = error.retry_after if isinstance(error, RetryLater) else None
    if retry_after is not None:  # the server said when: honour it (capped), spread a little
        delay = _spread(min(max(retry_after, 1.0), settings.max_backoff_s))
    else:
        delay = backoff_s(source.interval_s, source.failures, settings)
    source.next_poll_at = now() + timedelta(seconds=delay)
    kind = "feed" if isinstance(error, FeedError) else "fetch" if isinstance(error, FetchError) else "error"
    log.info("monitor source %s failed (%s, %d in a row): %s", source.id, kind, source.failures, error)
    if source.failures >= settings.pause_after:
        source.state = "paused"
        source.state_reason = f"paused after {source.failures} failures in a row; last: {source.last_error}"
        recipients = holders(session, ["monitor", "admin"], source.organization_id)
        if source.created_by is not None:
            recipients = [source.created_by, *recipients]
        notify(
            session,
            recipients or [None],
            "monitor.source_paused",
            f"monitor source {source.id} ({source.name}) is paused: {source.state_reason}",
        )
        return PollOutcome(source.id, "paused", error=source.last_error)
    return PollOutcome(source.id, "failed", error=source.last_error)


# ---------------------------------------------------------------------------------------- scoring


def _score_new(source_id: int, entries: list[Entry]) -> list[_Scored]:
    """Score the entries this source has not sighted yet (read their keys first; scoring holds no transaction)."""
    keyed = {}
    for entry in entries:
        keyed.setdefault(text.entry_key(entry.guid, entry.link, entry.title, entry.text), entry)
    with session_scope() as session:
        seen = set(
            session.scalars(
                select(Sighting.entry_key).where(Sighting.source_id == source_id, Sighting.entry_key.in_(list(keyed)))
            )
        )
        orgs = dict(session.execute(select(Organization.id, Organization.name)).all())
    fresh = [(k, e) for k, e in keyed.items() if k not in seen]
    if not fresh:
        return []
    bodies = [f"{e.title}\n{e.text}" for _k, e in fresh]
    signatures = neardup.signatures(bodies)
    verdicts = _screen([b[:SCREEN_CHARS] for b in bodies])
    org_terms = {org_id: normalize_term(name) for org_id, name in orgs.items() if name.strip()}
    scored = []
    for (key, entry), body, signature, verdict in zip(fresh, bodies, signatures, verdicts, strict=True):
        norm = normalize(body)
        if entry.identity:
            # a comment: its GUID is what it is (the same words from two readers are two comments), and its
            # link is the post's, shared with every other comment on it, so it is no duplicate key either
            content_hash, link_hash = text.sha256("identity:" + entry.identity), ""
        else:
            content_hash = text.content_key(entry.title, entry.text)
            link_hash = text.sha256(text.canonical_link(entry.link)) if entry.link else ""
        neg = negativity(norm)
        scores = {
            "moderation": verdict,
            "negativity": neg.to_dict(),
            "needs": needs.needs_of(norm),
            "mentions": sorted(org_id for org_id, term in org_terms.items() if term and term in norm.text),
        }
        scored.append(
            _Scored(
                entry=entry,
                key=key,
                content_hash=content_hash,
                link_hash=link_hash,
                signature=signature,
                negativity=neg.score,
                scores=scores,
                norm=norm,
            )
        )
    return scored


def _screen(texts: list[str]) -> list[dict[str, Any]]:
    """Moderation's verdicts as stored: decision, categories and the first hits (the classifier if configured)."""
    try:
        verdicts = moderation.screen_batch(texts)
    except moderation.ModerationError as exc:
        return [{"error": str(exc)[:500]} for _ in texts]
    out = []
    for v in verdicts:
        data = v.to_dict()
        data["hit_count"] = len(data["hits"])
        data["hits"] = data["hits"][:HITS_KEPT]
        out.append(data)
    return out


# ---------------------------------------------------------------------------------------- storing


def _existing(session: Session, s: _Scored) -> Item | None:
    item = session.scalar(select(Item).where(Item.content_hash == s.content_hash))
    if item is None and s.link_hash:
        item = session.scalar(select(Item).where(Item.link_hash == s.link_hash, Item.title == s.entry.title).limit(1))
    return item


class _Known:
    """The stored items a poll's entries may duplicate and the recent items sharing their LSH bands, each read
    in one query for the whole poll (not two or three per entry, as profiling a cycle showed them costing),
    and kept up to date as the poll stores items, so entries of one feed meet each other too. The band read is
    capped at CANDIDATES rows per entry, newest first, over the whole poll: a very large recent story can use
    the cap up, and an entry then starts a story of its own rather than joining an older one."""

    def __init__(self, session: Session, scored: list[_Scored], settings: MonitorSettings) -> None:
        self.threshold = settings.cluster_threshold
        hashes = list({s.content_hash for s in scored})
        links = list({s.link_hash for s in scored if s.link_hash})
        self.by_hash: dict[str, Item] = {}
        self.by_link: dict[tuple[str, str], Item] = {}
        if hashes:
            self.by_hash = {
                i.content_hash: i for i in session.scalars(select(Item).where(Item.content_hash.in_(hashes)))
            }
        if links:
            for i in session.scalars(select(Item).where(Item.link_hash.in_(links)).order_by(Item.id)):
                self.by_link.setdefault((i.link_hash, i.title), i)
        self.keys = {id(s): neardup.band_keys(s.signature, self.threshold) for s in scored}
        # rows written in one executemany at the end of the poll, not as thousands of ORM objects (26 bands an item)
        self.band_rows: list[dict[str, Any]] = []
        self.sighting_rows: list[dict[str, Any]] = []
        wanted = list({k for keys in self.keys.values() for k in keys})
        since = now() - timedelta(hours=settings.cluster_window_h)
        # the candidates of each band (newest first), at most CANDIDATES per entry as one query per entry read
        self.bands: dict[str, list[tuple[int, int, Any]]] = {}
        if wanted:
            rows = session.execute(
                select(LshBand.band_key, Item.id, Item.story_id, Item.signature)
                .join(Item, Item.id == LshBand.item_id)
                .where(LshBand.band_key.in_(wanted), LshBand.created_at >= since)
                .order_by(LshBand.id.desc())
                .limit(CANDIDATES * max(1, len(scored)))
            ).all()
            for key, item_id, story_id, signature in rows:
                if signature is not None:
                    self.bands.setdefault(key, []).append((item_id, story_id, signature))

    def find(self, s: _Scored) -> Item | None:
        item = self.by_hash.get(s.content_hash)
        if item is None and s.link_hash:
            item = self.by_link.get((s.link_hash, s.entry.title))
        return item

    def add(self, item: Item) -> None:
        self.by_hash.setdefault(item.content_hash, item)
        if item.link_hash:
            self.by_link.setdefault((item.link_hash, item.title), item)

    def add_bands(self, s: _Scored, item: Item) -> None:
        for key in self.keys[id(s)]:
            self.bands.setdefault(key, []).insert(0, (item.id, item.story_id, s.signature))

    def story_of(self, s: _Scored) -> int | None:
        """The story of the most similar recent item sharing a band, if similar enough."""
        candidates: dict[int, tuple[int, Any]] = {}
        for key in self.keys[id(s)]:
            for item_id, story_id, signature in self.bands.get(key, ()):
                if len(candidates) >= CANDIDATES:
                    break
                candidates.setdefault(item_id, (story_id, signature))
        best, best_story = 0.0, None
        for story_id, signature in candidates.values():
            other = (
                neardup.from_bytes(signature) if isinstance(signature, bytes | bytearray | memoryview) else signature
            )
            sim = neardup.similarity(s.signature, other)
            if sim > best:
                best, best_story = sim, story_id
        if best_story is None or best < self.threshold:
            return None
        return best_story


CANDIDATES = 200  # items compared per new entry (the most recent sharing a band)


def _store(
    session: Session, source: Source, scored: list[_Scored], settings: MonitorSettings, outcome: PollOutcome
) -> None:
    rules = _rules_for(session, source)
    known = _Known(session, scored, settings)
    for s in scored:
        item = known.find(s)
        fresh = False
        if item is None:
            try:
                with session.begin_nested():
                    item = _new_item(session, source, s, settings, known)
                outcome.new_items += 1
                fresh = True
            except IntegrityError:  # another worker stored the same content a moment ago
                item = _existing(session, s)
                if item is None:
                    raise
            known.add(item)
        # every entry this source carries is sighted once (the read in _score_new left out those it had)
        known.sighting_rows.append(
            {"item_id": item.id, "source_id": source.id, "entry_key": s.key, "link": s.entry.link}
        )
        if item.source_id != source.id:
            outcome.sightings += 1
        _match_rules(session, rules, item, outcome, settings, norm=s.norm, fresh=fresh)
    if known.sighting_rows:
        session.execute(insert(Sighting), known.sighting_rows)
    if known.band_rows:
        session.execute(insert(LshBand), known.band_rows)


def _new_item(session: Session, source: Source, s: _Scored, settings: MonitorSettings, known: _Known) -> Item:
    story_id = known.story_of(s)
    story = session.get(Story, story_id) if story_id is not None else None
    t = now()
    if story is None:
        story = Story(title=s.entry.title or s.entry.text[:100], item_count=0, first_seen_at=t, last_seen_at=t)
        session.add(story)
        session.flush()
    story.item_count += 1
    story.last_seen_at = t
    item = Item(
        story_id=story.id,
        source_id=source.id,
        link=s.entry.link,
        link_hash=s.link_hash,
        content_hash=s.content_hash,
        title=s.entry.title,
        summary_html=s.entry.summary_html,
        text=s.entry.text,
        author=s.entry.author,
        published_at=s.entry.published_at,
        fetched_at=t,
        signature=neardup.to_bytes(s.signature),
        negativity=s.negativity,
        scores=s.scores,
    )
    if s.entry.origin:
        item.delivery_id = s.entry.origin.get("delivery_id")
        item.account_id = s.entry.origin.get("account_id")
        item.post_id = s.entry.origin.get("post_id")
    session.add(item)
    session.flush()
    known.band_rows.extend({"band_key": key, "item_id": item.id, "created_at": t} for key in known.keys[id(s)])
    known.add_bands(s, item)
    return item


# ------------------------------------------------------------------------------------------ rules


def _rules_for(session: Session, source: Source) -> list[tuple[Rule, query.Node]]:
    """Enabled rules whose scope covers ``source``: its organisation's subtree, listed sources, tags."""
    chosen = []
    for rule in session.scalars(select(Rule).where(Rule.enabled.is_(True)).order_by(Rule.id)):
        scope = rule.scope or {}
        if source.organization_id not in subtree(session, [rule.organization_id]):
            continue
        if scope.get("sources") and source.id not in scope["sources"]:
            continue
        if scope.get("tags") and not set(scope["tags"]) & set(source.tags or []):
            continue
        try:
            chosen.append((rule, query.parse(rule.query)))
        except InvalidInput:  # queries are checked when a rule is written; one broken since is skipped
            log.warning("monitor rule %s has a query that no longer parses", rule.id)
            continue
    return chosen


def _window_start(t: datetime, hours: float) -> datetime:
    width = max(1, int(hours * 3600))
    return datetime.fromtimestamp(int(t.timestamp()) // width * width, t.tzinfo)


def _match_rules(
    session: Session,
    rules: list[tuple[Rule, query.Node]],
    item: Item,
    outcome: PollOutcome,
    settings: MonitorSettings,
    *,
    norm: Normalized,
    fresh: bool,
) -> None:
    if not rules:
        return
    # an item stored by this poll has no hits yet; one stored before may (another source's entry of it)
    done = set() if fresh else set(session.scalars(select(RuleHit.rule_id).where(RuleHit.item_id == item.id)))
    for rule, node in rules:
        if rule.id in done:
            continue
        m = query.match(node, norm)
        if m is None:
            continue
        session.add(
            RuleHit(
                rule_id=rule.id,
                item_id=item.id,
                story_id=item.story_id,
                matched={"terms": list(m.terms), "spans": [list(sp) for sp in m.spans]},
            )
        )
        outcome.rule_hits += 1
        _alert_once(session, rule, item, settings, outcome)


def _alert_once(session: Session, rule: Rule, item: Item, settings: MonitorSettings, outcome: PollOutcome) -> None:
    """One alert per story per rule per window: the unique key decides, so two workers cannot both alert."""
    window = _window_start(now(), settings.alert_window_h)
    exists = session.scalar(
        select(Alert.id).where(Alert.rule_id == rule.id, Alert.story_id == item.story_id, Alert.window_start == window)
    )
    if exists is not None:
        return
    message = f"monitor rule {rule.name!r} matched: {item.title or item.text[:80]} ({item.link or 'no link'})"
    alert = Alert(rule_id=rule.id, story_id=item.story_id, item_id=item.id, window_start=window, message=message)
    try:
        with session.begin_nested():
            session.add(alert)
    except IntegrityError:
        return
    recipients = (
        [rule.created_by] if rule.created_by is not None else holders(session, ["monitor"], rule.organization_id)
    )
    notify(session, recipients or [None], "monitor.alert", message[:2000])
    # and once on each robot and mailbox that takes the rule's alerts (the unique send key; sent after commit)
    alerting.queue_sends(session, alert, rule, settings)
    outcome.alerts += 1
