"""Polite, robust fetching of feeds, through the kernel's guarded client (:mod:`core.http`) and nothing else.

- **Conditional GET**: the source's ``ETag`` and ``Last-Modified`` go out as ``If-None-Match`` and
  ``If-Modified-Since``; a 304 is an answer with no body, and nothing is parsed.
- **Limits**: :func:`core.http.fetch` caps the body (``MATRIX_MONITOR_BODY_MAX_BYTES``; a declared length over
  it is refused before reading), the redirects (each hop checked again by the guard, so a redirect to a private
  or loopback address is refused unless on ``MATRIX_OUTBOUND_ALLOW``) and the total time (a server that trickles
  bytes is cut off); the client's timeouts bound each read.
- **Per host**: at most ``host_concurrency`` requests in flight and ``host_spacing_s`` between two of them, over
  every worker process and machine (:class:`HostGate`: leases in ``monitor_host_slots`` and the kernel's shared
  rate limiter); hosts named in ``host_limits`` (an installation's own RSSHub) have limits of their own. A busy
  host is :class:`RetryLater`, not a failure of the source.
- **Answers mapped once**: 429 and 5xx are :class:`RetryLater` with the ``Retry-After`` they carry; other
  non-2xx answers and refusals are :class:`FetchError`; transport errors are :class:`RetryLater`.
"""

from __future__ import annotations

import email.utils
import functools
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC

import httpx
import redis
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from core import ratelimit
from core.db import engine_for
from core.http import OutboundRefused, fetch, guarded_client, safe_url
from core.settings import get_settings
from monitor.errors import FetchError, HostBusy, RetryLater
from monitor.models import HostSlot
from monitor.settings import MonitorSettings

ACCEPT = "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, */*;q=0.5"
_slots: sa.Table = HostSlot.__table__  # type: ignore[assignment]
_UPSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@dataclass
class FetchResult:
    """A fetch that answered: 200 with a body, or 304 (not modified) without one."""

    status: int
    url: str
    content: bytes
    content_type: str
    etag: str | None
    last_modified: str | None
    max_age_s: float | None  # the answer's Cache-Control max-age, if any

    @property
    def not_modified(self) -> bool:
        """True for a 304: nothing changed, nothing to parse."""
        return self.status == 304


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _max_age(cache_control: str | None) -> float | None:
    for part in (cache_control or "").split(","):
        key, _, value = part.strip().partition("=")
        if key.lower() == "max-age" and value.strip().isdigit():
            return float(value.strip())
    return None


def host_of(url: str) -> str:
    """The host (and port) that per-host limits count against."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return ""
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


def make_client(settings: MonitorSettings) -> httpx.Client:
    """The guarded client feeds are fetched with (redirects are followed by :func:`core.http.fetch`)."""
    return guarded_client(timeout=settings.timeout_s, headers={"Accept": ACCEPT})


def fetch_feed(
    client: httpx.Client,
    url: str,
    settings: MonitorSettings,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FetchResult:
    """GET a feed conditionally; raises :class:`FetchError` / :class:`RetryLater` with a one-line reason."""
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        got = fetch(
            client,
            url,
            max_bytes=settings.body_max_bytes,
            max_redirects=settings.max_redirects,
            deadline_s=settings.deadline_s,
            headers=headers,
        )
    except OutboundRefused as exc:
        raise FetchError(str(exc)) from None
    except httpx.TimeoutException as exc:
        raise RetryLater(f"{safe_url(url)} timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise RetryLater(f"{safe_url(url)} could not be reached ({type(exc).__name__})") from None
    status = got.status
    result = FetchResult(
        status=status,
        url=got.url,
        content=got.content,
        content_type=got.headers.get("content-type", ""),
        etag=got.headers.get("etag") or etag,
        last_modified=got.headers.get("last-modified") or last_modified,
        max_age_s=_max_age(got.headers.get("cache-control")),
    )
    if status == 304 or 200 <= status < 300:
        return result
    where = safe_url(got.url)
    if status == 429 or status >= 500:
        wait = retry_after_seconds(got.headers.get("retry-after"))
        raise RetryLater(f"{where} answered HTTP {status}", retry_after=wait)
    if 300 <= status < 400:
        raise FetchError(f"{where} answered HTTP {status} without a usable Location")
    raise FetchError(f"{where} answered HTTP {status}")


# ------------------------------------------------------------------------------------------- per host


class HostGate:
    """Per-host concurrency (leases in ``monitor_host_slots``) and spacing (the kernel's shared limiter).

    A lease expires after ``lease_s`` so a killed worker frees its slot; ``max_wait_s`` bounds how long a
    caller waits for a slot or its spacing before it gets :class:`RetryLater` (the source is tried again soon,
    and no failure is counted). ``limits`` gives named hosts limits of their own (``{host: (concurrency,
    spacing_s)}``, :attr:`MonitorSettings.host_limits`): an installation's own RSSHub may take more than a
    stranger's server, while every other host keeps the defaults.
    """

    def __init__(
        self,
        engine: Engine,
        limiter: ratelimit.SharedLimiter,
        *,
        concurrency: int,
        spacing_s: float,
        limits: dict[str, tuple[int, float]] | None = None,
        lease_s: float = 120.0,
        max_wait_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine, self.limiter = engine, limiter
        self.concurrency, self.spacing_s = max(1, concurrency), spacing_s
        self.limits = {host.lower(): (max(1, c), float(s)) for host, (c, s) in (limits or {}).items()}
        self.lease_s, self.max_wait_s = lease_s, max_wait_s
        self.clock, self.sleep = clock, sleep
        self.holder = uuid.uuid4().hex

    def limits_for(self, host: str) -> tuple[int, float]:
        """``(concurrency, spacing_s)`` of ``host``: its own, or the defaults."""
        return self.limits.get(host.lower(), (self.concurrency, self.spacing_s))

    def _try_take(self, host: str, holder: str) -> int | None:
        t = _slots.c
        concurrency = self.limits_for(host)[0]
        with self.engine.begin() as conn:
            insert = _UPSERT[conn.dialect.name]
            conn.execute(
                insert(_slots)
                .values([{"host": host, "slot": i, "holder": None, "expires_at": 0.0} for i in range(concurrency)])
                .on_conflict_do_nothing()
            )
            now = self.clock()
            for slot in range(concurrency):
                taken = conn.execute(
                    _slots.update()
                    .where(t.host == host, t.slot == slot, sa.or_(t.holder.is_(None), t.expires_at < now))
                    .values(holder=holder, expires_at=now + self.lease_s)
                )
                if taken.rowcount == 1:
                    return slot
        return None

    def _renew(self, host: str, slot: int, holder: str) -> None:
        t = _slots.c
        with self.engine.begin() as conn:
            conn.execute(
                _slots.update()
                .where(t.host == host, t.slot == slot, t.holder == holder)
                .values(expires_at=self.clock() + self.lease_s)
            )

    def _release(self, host: str, slot: int, holder: str) -> None:
        t = _slots.c
        with self.engine.begin() as conn:
            conn.execute(
                _slots.update()
                .where(t.host == host, t.slot == slot, t.holder == holder)
                .values(holder=None, expires_at=0.0)
            )

    def _space(self, host: str) -> None:
        spacing_s = self.limits_for(host)[1]
        try:
            self.limiter.acquire(f"monitor-host:{host}", 1.0 / spacing_s if spacing_s > 0 else 0)
        except ratelimit.RateLimitExceeded as exc:
            raise HostBusy(f"{host} is spaced: {exc}", retry_after=exc.retry_after) from None

    @contextmanager
    def lease(self, host: str, *, wait: bool = True) -> Iterator[HostLease]:
        """Hold one of ``host``'s slots for a run of requests (:meth:`HostLease.request` spaces each one);
        :class:`HostBusy` if no slot is free within ``max_wait_s`` (at once with ``wait=False``: a poll's extra
        lanes take a free slot or none). One lease is one request in flight: a poll of many sources fetches one
        host's feeds one after another on each slot it holds."""
        holder = f"{self.holder}:{uuid.uuid4().hex[:8]}"  # each lease its own holder: threads of one process
        deadline = self.clock() + (self.max_wait_s if wait else 0.0)
        taken = self._try_take(host, holder)
        while taken is None:
            if self.clock() >= deadline:
                raise HostBusy(f"{host} already has {self.limits_for(host)[0]} requests in flight", retry_after=None)
            self.sleep(0.1)
            taken = self._try_take(host, holder)
        held = HostLease(self, host, taken, holder, self.clock())
        try:
            yield held
        finally:
            self._release(host, taken, holder)

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of ``host``'s slots, spaced from the previous request; :class:`RetryLater` if busy."""
        with self.lease(host) as held, held.request():
            yield


class HostLease:
    """One slot of one host, held by :meth:`HostGate.lease`; renewed as requests go, so a long run keeps it."""

    def __init__(self, gate: HostGate, host: str, slot: int, holder: str, taken_at: float) -> None:
        self.gate, self.host, self.slot, self.holder = gate, host, slot, holder
        self.renewed_at = taken_at

    @contextmanager
    def request(self) -> Iterator[None]:
        """One request under this lease: spaced from the host's previous one (:class:`HostBusy` if the spacing
        would wait longer than the limiter allows); the lease is renewed once half of it has gone."""
        if self.gate.clock() - self.renewed_at > self.gate.lease_s / 2:
            self.gate._renew(self.host, self.slot, self.holder)
            self.renewed_at = self.gate.clock()
        self.gate._space(self.host)
        yield


def host_gate(settings: MonitorSettings) -> HostGate:
    """The process's gate for the configured database and broker (Redis spaces requests where it is there)."""
    core = get_settings()
    limits = tuple(sorted((host, (c, s)) for host, (c, s) in settings.host_limits_parsed().items()))
    return _gate_for(core.broker_url, core.database_url, settings.host_concurrency, settings.host_spacing_s, limits)


@functools.lru_cache(maxsize=4)
def _gate_for(
    broker_url: str,
    database_url: str,
    concurrency: int,
    spacing_s: float,
    limits: tuple[tuple[str, tuple[int, float]], ...] = (),
) -> HostGate:
    engine = engine_for(database_url)
    if broker_url.startswith(("redis://", "rediss://")):
        limiter: ratelimit.SharedLimiter = ratelimit.RedisLimiter(redis.Redis.from_url(broker_url))
    else:
        limiter = ratelimit.SqlLimiter(engine)
    return HostGate(engine, limiter, concurrency=concurrency, spacing_s=spacing_s, limits=dict(limits))
