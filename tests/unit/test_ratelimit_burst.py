"""Per-IP budgets ("N calls an hour from one server IP") and our own limiter's refusals as :class:`Throttled`.

The burst is checked on every store (SQLite with an injected clock; PostgreSQL and Redis as ``services`` tests,
skipped when unreachable unless ``MATRIX_TEST_REQUIRE_SERVICES=1``); the adapter's side with a recording limiter
and ``httpx.MockTransport``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
import sqlalchemy as sa

from channels.base import AccountInfo, LocalLimiter
from channels.errors import NotSent, RateLimited, Throttled
from channels.website import WebsiteChannel
from channels.weibo import Weibo
from core.db import engine_for
from core.ratelimit import RateLimit, RateLimitExceeded, RedisLimiter, SharedLimiter, SqlLimiter
from tests.support.stack import PG_ADMIN_URL, REDIS_URL, require_services


class FakeClock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _key() -> str:
    return f"test:{uuid.uuid4().hex[:12]}"


def test_a_burst_goes_at_once_then_the_pace_applies(tmp_path) -> None:
    clock = FakeClock()
    lim = SqlLimiter(engine_for(f"sqlite:///{tmp_path / 'l.db'}"), clock=clock, max_wait_s=1.0)
    lim.create_table()
    key = _key()
    assert [lim.reserve(key, 1.0, burst=5) for _ in range(5)] == [0.0] * 5
    assert lim.reserve(key, 1.0, burst=5) == 1.0  # the sixth waits one interval
    with pytest.raises(RateLimitExceeded) as caught:
        lim.reserve(key, 1.0, burst=5)
    assert caught.value.retry_after == 2.0
    clock.t += 3600  # idle: the whole burst is available again, never more
    assert [lim.reserve(key, 1.0, burst=5) for _ in range(5)] == [0.0] * 5
    assert lim.reserve(key, 1.0, burst=5) == 1.0


def test_an_hourly_budget_never_lets_more_than_n_calls_into_any_hour(tmp_path) -> None:
    """burst = N/2 and N/2 spread over the hour: the most any hour-long span can see is N."""
    n, period = 100, 3600.0
    clock = FakeClock()
    lim = SqlLimiter(engine_for(f"sqlite:///{tmp_path / 'l.db'}"), clock=clock, max_wait_s=0.0)
    lim.create_table()
    key, granted = _key(), []
    while clock.t < 1_000.0 + 3 * period:  # a caller that tries every 10 s for three hours
        try:
            lim.reserve(key, n / 2 / period, burst=n // 2)
            granted.append(clock.t)
        except RateLimitExceeded:
            pass
        clock.t += 10
    worst = max(sum(1 for t in granted if start <= t < start + period) for start in granted)
    assert n // 2 < worst <= n


@pytest.fixture(
    params=[pytest.param("postgres", marks=pytest.mark.services), pytest.param("redis", marks=pytest.mark.services)]
)
def server_limiter(request: pytest.FixtureRequest) -> Iterator[SharedLimiter]:
    require_services()
    if request.param == "postgres":
        engine = sa.create_engine(PG_ADMIN_URL)
        lim = SqlLimiter(engine, max_wait_s=0.2)
        lim.create_table()
        yield lim
        with engine.begin() as conn:
            conn.execute(sa.delete(RateLimit).where(RateLimit.key.like("test:%")))
        engine.dispose()
    else:
        client = redis.Redis.from_url(REDIS_URL)
        prefix = f"mmtest:{uuid.uuid4().hex}:"
        yield RedisLimiter(client, prefix=prefix, max_wait_s=0.2)
        for k in client.scan_iter(f"{prefix}*"):
            client.delete(k)
        client.close()


def test_the_burst_holds_on_the_servers(server_limiter: SharedLimiter) -> None:
    key = _key()
    waits = [server_limiter.reserve(key, 0.1, burst=4) for _ in range(4)]  # 10 s apart after the burst
    assert waits == pytest.approx([0.0] * 4, abs=0.05)
    with pytest.raises(RateLimitExceeded) as caught:
        server_limiter.reserve(key, 0.1, burst=4)
    assert caught.value.retry_after == pytest.approx(10.0, abs=0.5)


def test_the_local_limiter_takes_a_burst_too() -> None:
    lim = LocalLimiter(max_wait_s=0.0)
    for _ in range(3):
        lim.acquire("k", 0.01, burst=3)
    with pytest.raises(RateLimited):
        lim.acquire("k", 0.01, burst=3)


# ------------------------------------------------------------------------------------ the adapter


class Refusing:
    """A limiter whose store says "wait 30 s" (or, without ``retry_after``, that it is unreachable)."""

    def __init__(self, retry_after: float | None) -> None:
        self.retry_after = retry_after

    def acquire(self, key: str, per_second: float, burst: int = 1) -> None:
        raise RateLimited(f"rate limit for {key}", retry_after=self.retry_after)


def _website(limiter) -> tuple[WebsiteChannel, list[httpx.Request]]:
    sent: list[httpx.Request] = []
    client = httpx.Client(transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200, json={})))
    account = AccountInfo(id=1, kind="website", name="w", credentials={"username": "u", "app_password": "p"})
    return WebsiteChannel(account, client, limiter=limiter), sent


def test_our_own_limiter_s_refusal_is_throttled_and_nothing_is_sent() -> None:
    channel, sent = _website(Refusing(30.0))
    with pytest.raises(Throttled) as caught:
        channel.request("GET", "https://example.org/wp-json/wp/v2/users/me")
    assert caught.value.retry_after == 30.0 and isinstance(caught.value, NotSent)
    assert sent == []


def test_an_unreachable_limiter_store_is_not_sent_not_throttled() -> None:
    channel, sent = _website(Refusing(None))
    with pytest.raises(NotSent) as caught:
        channel.request("GET", "https://example.org/wp-json/wp/v2/users/me")
    assert not isinstance(caught.value, Throttled) and sent == []


def test_a_platform_429_stays_rate_limited_not_throttled() -> None:
    """Only our own limiter's refusal is free; the platform's "slow down" was a real attempt."""
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(429, headers={"Retry-After": "7"})))
    account = AccountInfo(id=1, kind="website", name="w", credentials={"username": "u", "app_password": "p"})
    channel = WebsiteChannel(account, client, limiter=LocalLimiter())
    with pytest.raises(RateLimited) as caught:
        channel.request("GET", "https://example.org/wp-json/wp/v2/users/me")
    assert not isinstance(caught.value, Throttled) and caught.value.retry_after == 7


def test_weibo_declares_its_per_ip_budget() -> None:
    assert Weibo.ip_limit == (10_000, 3600.0)
    assert WebsiteChannel.ip_limit is None  # WordPress limits nothing per IP by itself
