"""Polls of sources: fetch, parse, store once, cluster into stories, score, match rules, alert.

:func:`poll_sources` polls many sources in one go (a task's share of what beat found due); :func:`poll_source`
is the same for one. The steps and where the transactions are (none is held over the network or scoring)::

    read the sources (URLs, validators)                             one read-only transaction
    fetch each under its host's gate (concurrently, within each     no transaction
      host's limits); parse each body unless 304
    drop entries each source has already sighted                    one read-only transaction
    score what is left, each distinct text once, in one batch:      no transaction
      moderation (screen_batch), negativity, needs, mentions
    store (monitor.store): duplicates become sightings, new items   one write transaction
      join a story (MinHash LSH) or start one, rules in scope are
      matched, alerts made once per story, rule and window
    record each outcome on its source: next poll, failures, pause   (same transaction)

A fetch or a body that fails fails its own source only (its reason is recorded on it); the others go on.

Exact duplicates: the same entry key in one source (GUID, else link, else title + text); across sources the
same content hash, or the same link with the same title. Near duplicates: :mod:`monitor.neardup`.

A source of kind ``comments`` reads readers' comments on our own posts instead of a feed
(:mod:`monitor.comments`: the same steps, the platforms called outside any transaction); a comment's identity is
its GUID, not its words (two readers writing 欠薪了 are two items), and its cursors are saved with its items.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

import ahocorasick_rs
import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

import moderation
from core.clock import now
from core.db import READ_ONLY, session_factory, session_scope
from core.notify import notify
from moderation.normalize import normalize, normalize_term
from monitor import comments, neardup, needs, signals, text
from monitor.errors import FeedError, FetchError, HostBusy, MonitorError, RetryLater
from monitor.fetch import FetchResult, HostGate, fetch_feed, host_gate, host_of, make_client
from monitor.models import Sighting, Source
from monitor.negativity import negativity
from monitor.parse import Entry, ParsedFeed, parse_feed
from monitor.settings import MonitorSettings, get_monitor_settings
from monitor.store import RuleSet, Scored, store
from publisher.domain.models import Organization, OrganizationAlias
from publisher.services.common import holders

log = logging.getLogger(__name__)

SCREEN_CHARS = 2000  # characters of an item screened by moderation (its cost grows with the length)
HITS_KEPT = 10  # moderation hits kept per item (the evidence a monitor reads; the rest is counted)
IN_CHUNK = 500  # entry keys in one IN (...) list


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
class _Fetch:
    """One feed source's fetch: what was read of it, then what came back (or why nothing did)."""

    source_id: int
    url: str
    etag: str | None
    last_modified: str | None
    result: FetchResult | None = None
    parsed: ParsedFeed | None = None
    error: MonitorError | None = None
    busy: HostBusy | None = None


def backoff_s(interval_s: float, failures: int, settings: MonitorSettings, rng: random.Random | None = None) -> float:
    """Delay after ``failures`` in a row: the interval doubled per failure, capped, with "equal jitter" (between
    half and all of it), so the failing feeds of one host do not all come back at the same moment."""
    base = min(settings.max_backoff_s, interval_s * 2 ** max(0, failures - 1))
    return base / 2 + (rng or random).uniform(0, base / 2)


def _spread(seconds: float, rng: random.Random | None = None) -> float:
    # up to 10 % later, so sources added together do not stay in step for ever
    return seconds * (1 + (rng or random).uniform(0, 0.1))


@contextmanager
def _read_scope() -> Iterator[Session]:
    """A transaction that only reads: on SQLite a plain BEGIN, so it neither takes nor waits for the write lock
    that another pool process holds while it stores (every session_scope begins IMMEDIATE)."""
    session = session_factory()()
    try:
        session.connection(execution_options=READ_ONLY)
        yield session
    finally:
        session.close()


def poll_lease_s(settings: MonitorSettings) -> float:
    """How long a claim of sources for one task lasts: the fetch budget, the last fetch's deadline and timeout,
    and a minute for scoring and storing (beat claims a source again only after that)."""
    return settings.poll_budget_s + settings.deadline_s + settings.timeout_s + 60


def poll_source(
    source_id: int,
    *,
    settings: MonitorSettings | None = None,
    client: httpx.Client | None = None,
    gate: HostGate | None = None,
) -> PollOutcome:
    """Poll one source now (if it is active): the whole pipeline of the module docstring."""
    return poll_sources([source_id], settings=settings, client=client, gate=gate)[0]


def poll_sources(
    source_ids: Sequence[int],
    *,
    settings: MonitorSettings | None = None,
    client: httpx.Client | None = None,
    gate: HostGate | None = None,
) -> list[PollOutcome]:
    """Poll each source now (those active): one outcome per id, in order (module docstring)."""
    settings = settings or get_monitor_settings()
    ids = list(dict.fromkeys(source_ids))
    with _read_scope() as session:
        rows = {
            r.id: r
            for chunk in _chunks(ids)
            for r in session.execute(
                select(Source.id, Source.url, Source.etag, Source.last_modified, Source.kind, Source.state).where(
                    Source.id.in_(chunk)
                )
            )
        }
    outcomes: dict[int, PollOutcome] = {}
    fetches: list[_Fetch] = []
    for sid in ids:
        row = rows.get(sid)
        if row is None or row.state != "active":
            outcomes[sid] = PollOutcome(sid, "skipped")
        elif row.kind == comments.KIND:
            outcomes[sid] = _poll_comments(sid, settings)
        else:
            fetches.append(_Fetch(sid, row.url, row.etag, row.last_modified))
    if fetches:
        own_client = client is None
        client = client or make_client(settings)
        try:
            _fetch_all(fetches, client, gate or host_gate(settings), settings)
        finally:
            if own_client:
                client.close()
        outcomes.update(_record_fetches(fetches, settings))
    return [outcomes[sid] for sid in source_ids]


# ---------------------------------------------------------------------------------------- fetching


def _fetch_all(fetches: list[_Fetch], client: httpx.Client, gate: HostGate, settings: MonitorSettings) -> None:
    """Fetch and parse every source, each host's at most its concurrency at a time (a lane per slot held, the
    lanes drawing from the host's queue), all hosts together up to ``poll_threads`` fetches in flight."""
    queues: dict[str, deque[_Fetch]] = {}
    for f in fetches:
        queues.setdefault(host_of(f.url), deque()).append(f)
    # (host, first lane?): a host's first lane waits for a slot as one poll would; the others take one if free
    lanes = [(host, n == 0) for host, q in queues.items() for n in range(min(len(q), gate.limits_for(host)[0]))]
    lock = threading.Lock()
    stop_at = time.monotonic() + settings.poll_budget_s

    def next_of(host: str) -> _Fetch | None:
        with lock:  # past the budget nothing new starts: what is left is deferred below
            return queues[host].popleft() if queues[host] and time.monotonic() < stop_at else None

    def lane(spec: tuple[str, bool]) -> None:
        host, first = spec
        try:
            with gate.lease(host, wait=first) as held:
                while (f := next_of(host)) is not None:
                    try:
                        with held.request():
                            f.result = fetch_feed(client, f.url, settings, etag=f.etag, last_modified=f.last_modified)
                    except HostBusy as exc:  # spaced out: this source and the rest of the host's queue wait
                        f.busy = exc
                        break
                    except MonitorError as exc:
                        f.error = exc
                        continue
                    _parse(f, settings)
        except HostBusy:
            pass  # no slot free: another lane of this host, or the next poll, takes the queue

    if len(lanes) == 1 or settings.poll_threads <= 1:
        for spec in lanes:
            lane(spec)
    else:
        with ThreadPoolExecutor(max_workers=min(len(lanes), settings.poll_threads)) as pool:
            list(pool.map(lane, lanes))
    for host, q in queues.items():  # what no lane reached: the host is busy, not the sources failing
        for f in q:
            if f.busy is None and time.monotonic() >= stop_at:
                f.busy = HostBusy(f"this poll's {settings.poll_budget_s:.0f} s were up before {host}", retry_after=None)
            elif f.busy is None:
                f.busy = HostBusy(f"{host} already has {gate.limits_for(host)[0]} requests in flight", retry_after=None)


def _parse(f: _Fetch, settings: MonitorSettings) -> None:
    result = f.result
    if result is None or result.not_modified:
        return
    try:
        f.parsed = parse_feed(
            result.content, content_type=result.content_type, url=result.url, max_entries=settings.items_per_fetch
        )
    except MonitorError as exc:
        f.error = exc


def _record_fetches(fetches: list[_Fetch], settings: MonitorSettings) -> dict[int, PollOutcome]:
    """Score what is new, then record every fetch's outcome and store the entries, in one write transaction."""
    fed = [(f.source_id, f.parsed.entries) for f in fetches if f.parsed is not None and f.parsed.entries]
    scored = _score_new(fed) if fed else {}
    outcomes: dict[int, PollOutcome] = {}
    with session_scope() as session:
        sources = {
            s.id: s
            for chunk in _chunks([f.source_id for f in fetches])
            for s in session.scalars(select(Source).where(Source.id.in_(chunk)))
        }
        work = []
        for f in fetches:
            source = sources.get(f.source_id)
            if source is None:  # deleted while it was fetched
                outcomes[f.source_id] = PollOutcome(f.source_id, "skipped")
                continue
            if f.busy is not None:  # not a failure: the source is tried again soon
                source.next_poll_at = now() + timedelta(seconds=_spread(max(f.busy.retry_after or 0, 5.0)))
                source.claimed_until = None
                outcomes[f.source_id] = PollOutcome(f.source_id, "deferred", error=str(f.busy))
                continue
            _polled(source)
            if f.error is not None or f.result is None:  # no error and no result cannot happen: fetch raises
                outcomes[f.source_id] = _record_failure(session, source, f.error or FetchError("no answer"), settings)
                continue
            result = f.result
            source.last_status = result.status
            source.etag, source.last_modified = result.etag, result.last_modified
            source.failures, source.last_error, source.last_success_at = 0, None, now()
            wait = max(source.interval_s, min(result.max_age_s or 0, settings.max_backoff_s))
            source.next_poll_at = now() + timedelta(seconds=_spread(wait))
            if f.parsed is None:
                outcomes[f.source_id] = PollOutcome(f.source_id, "not_modified")
                continue
            source.parse_count += 1
            outcomes[f.source_id] = PollOutcome(f.source_id, "new", warnings=f.parsed.warnings)
            work.append((source, scored.get(f.source_id, [])))
        if work:
            session.flush()
            for (source, _scored), stored in zip(work, store(session, work, settings), strict=True):
                _add(outcomes[source.id], stored)
    return outcomes


def _add(outcome: PollOutcome, stored: Any) -> None:
    outcome.new_items += stored.new_items
    outcome.sightings += stored.sightings
    outcome.rule_hits += stored.rule_hits
    outcome.alerts += stored.alerts


def _poll_comments(source_id: int, settings: MonitorSettings) -> PollOutcome:
    """One poll of a comments source: read (no transaction), score (none), store with the cursors (one)."""
    fetched = comments.fetch_comments(source_id, settings)
    if fetched is None:
        return PollOutcome(source_id, "skipped")
    scored = _score_new([(source_id, fetched.entries)]).get(source_id, []) if fetched.entries else []
    with session_scope() as session:
        source = session.get(Source, source_id)
        if source is None:
            return PollOutcome(source_id, "skipped")
        _polled(source)
        comments.save_cursors(session, source_id, fetched)
        if fetched.failure is not None:
            return _record_failure(session, source, fetched.failure, settings)
        source.failures, source.last_success_at = 0, now()
        # a poll that read some posts and not others succeeded; what failed is said, and kept on its cursor
        source.last_error = "; ".join(fetched.errors)[:2000] or None
        source.next_poll_at = now() + timedelta(seconds=_spread(source.interval_s))
        source.parse_count += 1
        outcome = PollOutcome(source_id, "new", warnings=fetched.errors)
        session.flush()
        _add(outcome, store(session, [(source, scored)], settings, RuleSet(session))[0])
        return outcome


def _polled(source: Source) -> None:
    """A poll of ``source`` has ended: its fetch counted and its claim released."""
    source.fetch_count += 1
    source.last_fetched_at = now()
    source.claimed_until = None


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


def _chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


class _Mentions:
    """Which organisations a normalised text names: every name and alias of the tree in one Aho-Corasick automaton,
    so a text is read once however many terms there are (``term in text`` per term grows with the tree: 2,000
    names and aliases over 1,000 texts, 4 ms against ~250 ms, README "Scores"). Overlapping matches, as ``in``
    found them: 南京市总工会 names both 南京市总工会 and a 市总工会 that is an alias."""

    def __init__(self, rows: tuple[tuple[int, str], ...]) -> None:
        orgs_of: dict[str, set[int]] = {}
        for org_id, term in rows:
            normalised = normalize_term(term)
            if normalised:  # a name of blanks only names nothing (and the automaton takes no empty pattern)
                orgs_of.setdefault(normalised, set()).add(org_id)
        self._orgs = [sorted(ids) for ids in orgs_of.values()]
        self._automaton = ahocorasick_rs.AhoCorasick(list(orgs_of)) if orgs_of else None

    def __call__(self, normalised_text: str) -> list[int]:
        """The ids of the organisations named in the text, sorted."""
        if self._automaton is None:
            return []
        found = {i for i, _start, _end in self._automaton.find_matches_as_indexes(normalised_text, overlapping=True)}
        return sorted({org_id for i in found for org_id in self._orgs[i]})


@lru_cache(maxsize=2)
def _mentions(rows: tuple[tuple[int, str], ...]) -> _Mentions:
    # Kept while the names and aliases stay the same (most polls): normalising 2,000 terms and building their
    # automaton is then paid once, not on every batch.
    return _Mentions(rows)


def _org_terms(session: Session) -> tuple[tuple[int, str], ...]:
    """Every (organisation id, name or alias) of the tree, in a stable order (the matcher cache's key)."""
    names = session.execute(select(Organization.id, Organization.name))
    aliases = session.execute(select(OrganizationAlias.organization_id, OrganizationAlias.alias))
    return tuple(sorted({(org_id, term) for org_id, term in [*names, *aliases]}))


def _score_new(fed: Sequence[tuple[int, Sequence[Entry]]]) -> dict[int, list[Scored]]:
    """Score the entries each source has not sighted yet: their keys read first, in one read-only transaction;
    then every distinct text scored once (a story reposted on ten feeds is one text), in one batch."""
    keyed: dict[int, dict[str, Entry]] = {}
    for source_id, entries in fed:
        own = keyed.setdefault(source_id, {})
        for entry in entries:
            own.setdefault(text.entry_key(entry.guid, entry.link, entry.title, entry.text), entry)
    seen: set[tuple[int, str]] = set()
    with _read_scope() as session:
        for source_id, own in keyed.items():
            for chunk in _chunks(list(own)):
                rows = session.execute(
                    select(Sighting.entry_key).where(Sighting.source_id == source_id, Sighting.entry_key.in_(chunk))
                )
                seen.update((source_id, key) for (key,) in rows)
        org_terms = _org_terms(session)
    fresh = [(sid, k, e) for sid, own in keyed.items() for k, e in own.items() if (sid, k) not in seen]
    if not fresh:
        return {}
    bodies = list(dict.fromkeys(f"{e.title}\n{e.text}" for _sid, _k, e in fresh))
    signatures = dict(zip(bodies, neardup.signatures(bodies), strict=True))
    verdicts = dict(zip(bodies, _screen([b[:SCREEN_CHARS] for b in bodies]), strict=True))
    mentions = _mentions(org_terms)  # names and aliases alike
    by_body: dict[str, tuple[Any, float, dict[str, Any]]] = {}
    norms = [normalize(body) for body in bodies]
    model = signals.get_model()
    # one batch through the trained model for negativity and the needs of every text
    outputs = model.predict([n.text for n in norms]) if model is not None else [None] * len(norms)
    for body, norm, out in zip(bodies, norms, outputs, strict=True):
        neg = negativity(norm, out)
        scores = {
            "moderation": verdicts[body],
            "negativity": neg.to_dict(),
            "needs": needs.needs_of(norm, out),
            "signals": out,  # the model's probabilities (>= 0.5: its decision), the evidence of its findings
            "mentions": mentions(norm.text),
        }
        by_body[body] = (norm, neg.score, scores)
    scored: dict[int, list[Scored]] = {}
    for source_id, key, entry in fresh:
        body = f"{entry.title}\n{entry.text}"
        norm, neg_score, scores = by_body[body]
        if entry.identity:
            # a comment: its GUID is what it is (the same words from two readers are two comments), and its
            # link is the post's, shared with every other comment on it, so it is no duplicate key either
            content_hash, link_hash = text.sha256("identity:" + entry.identity), ""
        else:
            content_hash = text.content_key(entry.title, entry.text)
            link_hash = text.sha256(text.canonical_link(entry.link)) if entry.link else ""
        scored.setdefault(source_id, []).append(
            Scored(
                entry=entry,
                key=key,
                content_hash=content_hash,
                link_hash=link_hash,
                signature=signatures[body],
                negativity=neg_score,
                scores=scores,  # shared by the entries of one text: stored as JSON, never changed in place
                norm=norm,
            )
        )
    return scored


def _screen(texts: list[str]) -> list[dict[str, Any]]:
    """Moderation's verdicts as stored: decision, categories and the first hits (the classifier if configured,
    for the items past the cascade's gate: ``MATRIX_MONITOR_SCREEN_GATE``; a post of ours is always screened whole
    by the publisher, this is what a monitor sees beside a feed item)."""
    gate = get_monitor_settings().screen_gate
    try:
        verdicts = moderation.screen_batch(texts, gate=gate or None)
    except moderation.ModerationError as exc:
        return [{"error": str(exc)[:500]} for _ in texts]
    out = []
    for v in verdicts:
        data = v.to_dict()
        data["hit_count"] = len(data["hits"])
        data["hits"] = data["hits"][:HITS_KEPT]
        out.append(data)
    return out
