"""Rate limits shared by threads, processes and machines: at most ``per_second`` calls per key.

A channel adapter calls ``limiter.acquire(key, per_second)`` before every request (the key names the platform
and the account: ``toutiao:42``). The limit must hold for the account, not for one adapter instance, so the
state lives where every worker sees it: Redis in production (:class:`RedisLimiter`), the database on the
embedded default (:class:`SqlLimiter`, SQLite or PostgreSQL). The publisher builds one instance per process.

The algorithm is GCRA ("theoretical arrival time"): each key stores ``next_at``, the theoretical time of
the next call; ``burst`` calls may go at once before the spacing applies (default 1: pure spacing). One atomic
read-modify-write per call::

    at   = max(now, next_at)                         # this call's theoretical slot
    wait = max(0, at - (burst - 1) / per_second - now)  # a burst lets it go that much early
    wait > max_wait  ──► refuse, store nothing: raise error(retry_after=wait)
    else             ──► next_at = at + 1 / per_second; sleep(wait); go

A granted call *reserves* its slot before it sleeps, so concurrent callers queue up one interval apart
without polling, and a refused one takes no slot from the others. In any span of ``T`` seconds at most
``burst + per_second * T`` calls go: a platform's "N calls an hour" is held by ``burst = N / 2`` and
``per_second = N / 2 / 3600`` (see ``channels.base.Channel.ip_limit``), which lets a fan-out's first N / 2
calls go at once instead of spacing every call 3600 / N s apart. ``max_wait`` (5 s, as
``channels.base.LocalLimiter``) bounds how long a worker sleeps: past it the caller gets a transient error
and the delivery is retried later instead of blocking a worker for a slow platform's queue.

Why hand-written, not the ``limits`` library: its strategies (fixed, moving, sliding window) count hits
in a window of whole seconds and answer "is this hit allowed now?". WeChat's 10 calls/s becomes 10 hits per
second, a burst, not one per 100 ms; and a caller that must wait can only poll ``get_window_stats`` and race
the others for the next free hit. What the adapters need is a *spacing* with a bounded wait, which is a
reservation, and ``limits`` has no SQL storage for the embedded default at all. The reservation is a few
lines of Lua for Redis and a read-and-update under the row lock for SQL.

Errors: this package imports none of ours, so the exception to raise is given by the caller (``error``,
called as ``error(message, retry_after=seconds)``; the publisher passes ``channels.errors.RateLimited``);
by default it is :class:`RateLimitExceeded`. A store that cannot be reached raises the same error, without
``retry_after``: no request has gone out, so a retry is safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from redis.exceptions import RedisError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.errors import MatrixError

ErrorFactory = Callable[..., Exception]
"""Builds the exception for a refused call: ``error(message, retry_after=seconds_or_None)``."""


class RateLimitExceeded(MatrixError):
    """A call would have had to wait longer than the limiter's ``max_wait``; retry after ``retry_after`` s."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):  # keep retry_after across pickling (Celery stores exceptions)
        return (_rebuild, (str(self), self.retry_after))


def _rebuild(message: str, retry_after: float | None) -> RateLimitExceeded:
    return RateLimitExceeded(message, retry_after=retry_after)


class SharedLimiter:
    """The acquire/refuse logic; subclasses make the reservation atomic in their store (:meth:`_reserve`).

    ``max_wait_s``: the longest a caller sleeps for its slot. ``error``: the exception factory (see the
    module docstring). ``sleep`` is injectable so tests can count instead of wait.
    """

    def __init__(
        self,
        *,
        max_wait_s: float = 5.0,
        error: ErrorFactory = RateLimitExceeded,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_wait_s = max_wait_s
        self.error = error
        self.sleep = sleep

    def acquire(self, key: str, per_second: float, burst: int = 1) -> None:
        """Wait for ``key``'s next slot (at most ``max_wait_s``), or raise ``error(retry_after=…)``."""
        wait = self.reserve(key, per_second, burst)
        if wait > 0:
            self.sleep(wait)

    def reserve(self, key: str, per_second: float, burst: int = 1) -> float:
        """Take ``key``'s next slot without sleeping: the seconds until it, or raise ``error(retry_after=…)``.

        ``per_second <= 0`` means no limit (0 s, nothing stored). ``burst``: calls that may go at once before
        the spacing applies (see the module docstring).
        """
        if per_second <= 0:
            return 0.0
        interval = 1.0 / per_second
        try:
            granted, wait = self._reserve(key, interval, self.max_wait_s, (max(1, burst) - 1) * interval)
        except (RedisError, sa.exc.OperationalError) as exc:
            raise self.error(f"rate limiter for {key} unavailable: {exc}", retry_after=None) from exc
        if not granted:
            raise self.error(f"rate limit for {key}: next call in {wait:.1f} s", retry_after=wait)
        return max(0.0, wait)

    def next_at(self, key: str) -> float | None:
        """When ``key``'s next call may go (epoch seconds, the store's clock); ``None`` if never used."""
        raise NotImplementedError

    def _reserve(self, key: str, interval: float, max_wait: float, tolerance: float) -> tuple[bool, float]:
        """Atomically: ``(True, wait)`` with the slot taken, or ``(False, wait)`` with nothing stored.

        ``tolerance``: how far ahead of its theoretical slot a call may go (``(burst - 1) * interval``)."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------------- Redis

# Redis's own clock (TIME), so machines whose clocks disagree still space calls correctly; the key expires
# a second after its slot has passed, so idle accounts leave nothing behind. Floats go back as strings:
# Redis truncates Lua numbers to integers.
_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local at = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local wait = math.max(0, at - tonumber(ARGV[3]) - now)
if wait > tonumber(ARGV[2]) then
  return {0, string.format('%.6f', wait)}
end
local nxt = at + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 1000)
return {1, string.format('%.6f', wait)}
"""


class RedisLimiter(SharedLimiter):
    """``next_at`` per key in Redis (``<prefix>rate:<key>``), reserved by one Lua script (atomic in Redis).

    Needs Redis ≥ 5 (a script that writes after reading ``TIME``).
    """

    def __init__(self, redis: Any, *, prefix: str = "mm:", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redis = redis
        self.prefix = prefix
        self._script = redis.register_script(_RESERVE_LUA)

    def _key(self, key: str) -> str:
        return f"{self.prefix}rate:{key}"

    def _reserve(self, key: str, interval: float, max_wait: float, tolerance: float) -> tuple[bool, float]:
        granted, wait = self._script(keys=[self._key(key)], args=[repr(interval), repr(max_wait), repr(tolerance)])
        return bool(int(granted)), float(wait)

    def next_at(self, key: str) -> float | None:
        raw = self.redis.get(self._key(key))
        return None if raw is None else float(raw)


# --------------------------------------------------------------------------------------------- SQL


class RateLimit(Base):
    """One rate-limit key's next allowed call (epoch seconds); see :class:`SqlLimiter`."""

    __tablename__ = "rate_limits"
    key: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    next_at: Mapped[float] = mapped_column(sa.Float)


_rate_limits: sa.Table = RateLimit.__table__  # type: ignore[assignment]
_UPSERT_DIALECTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class SqlLimiter(SharedLimiter):
    """``next_at`` per key in the ``rate_limits`` table (SQLite or PostgreSQL), read and moved under a lock.

    One transaction per call: create the key's row on first use (``INSERT … ON CONFLICT DO NOTHING``), lock
    it (PostgreSQL: ``SELECT … FOR UPDATE``; SQLite: the database's write lock, which ``core.db`` takes at
    BEGIN and any engine takes at the INSERT), read the clock *under* the lock, so a caller that queued for
    it gets its slot from when it got it, then store the new ``next_at`` or, refused, nothing.

    ``clock`` (epoch seconds) is the caller's: machines sharing a PostgreSQL database must keep their
    clocks in sync (NTP), as they must for every other time the publisher stores.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.clock = clock

    def create_table(self) -> None:
        """Create ``rate_limits`` if missing (tests; the publisher's migration does it in production)."""
        Base.metadata.create_all(self.engine, tables=[_rate_limits])

    def _reserve(self, key: str, interval: float, max_wait: float, tolerance: float) -> tuple[bool, float]:
        t = _rate_limits.c
        with self.engine.begin() as conn:
            self._ensure_row(conn, key)
            next_at = conn.execute(sa.select(t.next_at).where(t.key == key).with_for_update()).scalar_one()
            now = self.clock()
            at = max(now, next_at)
            wait = max(0.0, at - tolerance - now)
            if wait > max_wait:
                return False, wait
            conn.execute(_rate_limits.update().where(t.key == key).values(next_at=at + interval))
        return True, wait

    @staticmethod
    def _ensure_row(conn: Connection, key: str) -> None:
        insert = _UPSERT_DIALECTS[conn.dialect.name]
        conn.execute(insert(_rate_limits).values(key=key, next_at=0.0).on_conflict_do_nothing())

    def next_at(self, key: str) -> float | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(_rate_limits.c.next_at).where(_rate_limits.c.key == key)).scalar()
