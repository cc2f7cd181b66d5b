"""The shared token cache: single flight across threads/instances, stale-token handling, lock hygiene.

Every implementation runs the same checks. Redis and PostgreSQL tests skip when the server is not
reachable, unless ``MATRIX_TEST_REQUIRE_SERVICES=1`` (CI), where an unreachable server fails them.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from channels.errors import Unavailable
from channels.tokens import (
    MemoryTokenCache,
    RedisTokenCache,
    SqlTokenCache,
    channel_tokens,
)

REDIS_URL = os.environ.get("MATRIX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_URL = os.environ.get("MATRIX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE = os.environ.get("MATRIX_TEST_REQUIRE_SERVICES") == "1"

# A factory returns a *new* cache instance over the same store each call, as separate workers would have.
CacheFactory = Callable[..., object]


def _unreachable(what: str, exc: Exception) -> None:
    if REQUIRE:
        pytest.fail(f"{what} unreachable but MATRIX_TEST_REQUIRE_SERVICES=1: {exc}")
    pytest.skip(f"{what} unreachable: {exc}")


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def factory(request: pytest.FixtureRequest, tmp_path) -> Iterator[CacheFactory]:
    kind = request.param
    if kind == "memory":
        shared = MemoryTokenCache()
        yield lambda **kw: _with(shared, **kw)
    elif kind == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'tokens.db'}", connect_args={"timeout": 30})
        SqlTokenCache(engine).create_table()
        yield lambda **kw: SqlTokenCache(engine, **kw)
        engine.dispose()
    elif kind == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        try:
            client.ping()
        except Exception as exc:
            _unreachable("Redis", exc)
        prefix = f"mmtest:{uuid.uuid4().hex}:"
        yield lambda **kw: RedisTokenCache(redis.Redis.from_url(REDIS_URL), prefix=prefix, **kw)
        for k in client.scan_iter(f"{prefix}*"):
            client.delete(k)
        client.close()
    else:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
        try:
            with engine.connect():
                pass
        except Exception as exc:
            _unreachable("PostgreSQL", exc)
        SqlTokenCache(engine).create_table()
        with engine.begin() as conn:
            conn.execute(channel_tokens.delete().where(channel_tokens.c.key.like("test:%")))
        yield lambda **kw: SqlTokenCache(engine, **kw)
        with engine.begin() as conn:
            conn.execute(channel_tokens.delete().where(channel_tokens.c.key.like("test:%")))
        engine.dispose()


def _with(cache: MemoryTokenCache, **kw: object) -> MemoryTokenCache:
    # the in-memory cache is shared by threads of one process: same instance, settings applied
    for name, value in kw.items():
        setattr(cache, name, value)
    return cache


class Platform:
    """A fake token endpoint: counts fetches, optionally slow, issues t1, t2, …"""

    def __init__(self, delay: float = 0.0, expires_in: float = 7200.0) -> None:
        self.calls: list[bool] = []
        self.delay = delay
        self.expires_in = expires_in
        self._lock = threading.Lock()

    def fetch(self, force: bool) -> tuple[str, float]:
        with self._lock:
            self.calls.append(force)
            token = f"t{len(self.calls)}"
        time.sleep(self.delay)
        return token, self.expires_in


def _key() -> str:
    return f"test:{uuid.uuid4().hex[:12]}"


def _concurrently(n: int, fn: Callable[[int], str]) -> list[str]:
    results: list[str | BaseException] = [""] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:  # report, don't swallow
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


def test_first_use_fetches_once_then_caches(factory: CacheFactory) -> None:
    platform, key = Platform(), _key()
    cache = factory()
    assert cache.get(key, platform.fetch) == "t1"
    assert cache.get(key, platform.fetch) == "t1"
    assert factory().get(key, platform.fetch) == "t1"  # another worker's instance sees it too
    assert platform.calls == [False]


@pytest.mark.parametrize("n", [4, 8])
def test_concurrent_cold_start_fetches_exactly_once(factory: CacheFactory, n: int) -> None:
    platform, key = Platform(delay=0.3), _key()
    caches = [factory() for _ in range(n)]  # one instance per "worker"
    tokens = _concurrently(n, lambda i: caches[i].get(key, platform.fetch))
    assert tokens == ["t1"] * n
    assert platform.calls == [False]


def test_concurrent_stale_token_refreshes_exactly_once(factory: CacheFactory) -> None:
    platform, key = Platform(delay=0.3), _key()
    assert factory().get(key, platform.fetch) == "t1"
    caches = [factory() for _ in range(6)]
    # all six saw t1 rejected (e.g. 40001) at the same moment
    tokens = _concurrently(6, lambda i: caches[i].get(key, platform.fetch, stale="t1"))
    assert tokens == ["t2"] * 6
    assert platform.calls == [False, True]  # the refresh was a forced one


def test_stale_report_after_someone_refreshed_does_not_call_platform(factory: CacheFactory) -> None:
    platform, key = Platform(), _key()
    cache = factory()
    cache.get(key, platform.fetch)
    assert cache.get(key, platform.fetch, stale="t1") == "t2"
    # a late caller still holding t1 reports it: t2 is already there, no platform call
    assert factory().get(key, platform.fetch, stale="t1") == "t2"
    assert len(platform.calls) == 2


def test_expired_token_is_fetched_again_without_force(factory: CacheFactory) -> None:
    platform, key = Platform(expires_in=30.0), _key()  # inside the 60 s safety margin: never usable
    cache = factory()
    assert cache.get(key, platform.fetch) == "t1"
    assert cache.get(key, platform.fetch) == "t2"
    assert platform.calls == [False, False]


def test_failed_fetch_releases_the_lock(factory: CacheFactory) -> None:
    key = _key()
    cache = factory(wait_s=2.0)

    def broken(force: bool) -> tuple[str, float]:
        raise Unavailable("platform busy", code=-1)

    with pytest.raises(Unavailable):
        cache.get(key, broken)
    platform = Platform()
    assert cache.get(key, platform.fetch) == "t1"  # not blocked by a leftover lock


def test_waiter_gives_up_with_transient_error_when_holder_is_stuck(factory: CacheFactory) -> None:
    key = _key()
    holder, waiter = factory(wait_s=5.0, lock_ttl_s=30.0), factory(wait_s=0.3, lock_ttl_s=30.0)
    started, release = threading.Event(), threading.Event()

    def slow(force: bool) -> tuple[str, float]:
        started.set()
        release.wait(10)
        return "slow", 7200.0

    t = threading.Thread(target=lambda: holder.get(key, slow))
    t.start()
    try:
        assert started.wait(5)
        with pytest.raises(Unavailable):
            waiter.get(key, Platform().fetch)
    finally:
        release.set()
        t.join(10)
    assert waiter.get(key, Platform().fetch) == "slow"


def test_crashed_holders_lock_lapses(tmp_path) -> None:
    """A holder that died without releasing blocks others only until ``lock_until``."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 't.db'}")
    cache = SqlTokenCache(engine, lock_ttl_s=0.5, wait_s=3.0)
    cache.create_table()
    key = _key()
    assert cache._acquire(key, 1.0) is not None  # taken and never released: the "crash"
    started = time.monotonic()
    assert cache.get(key, Platform().fetch) == "t1"
    assert 0.3 < time.monotonic() - started < 3.0
    with engine.connect() as conn:
        row = conn.execute(sa.select(channel_tokens).where(channel_tokens.c.key == key)).one()
    assert row.lock_owner is None and row.token == "t1"


def test_release_only_by_owner(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 't.db'}")
    cache = SqlTokenCache(engine, lock_ttl_s=30.0)
    cache.create_table()
    key = _key()
    owner = cache._acquire(key, 1.0)
    cache._release(key, "not-the-owner")
    assert cache._acquire(key, 0.1) is None  # still held
    cache._release(key, owner)
    assert cache._acquire(key, 0.1) is not None


def _process_worker(store: str, url: str, key: str, counter: str, barrier: Any, results: Any) -> None:
    """One "worker process": its own engine/client and cache; fetches append a line to ``counter``."""
    if store == "redis":
        import redis

        cache: Any = RedisTokenCache(redis.Redis.from_url(url), prefix="mmtest:proc:")
    else:
        cache = SqlTokenCache(sa.create_engine(url, connect_args={"timeout": 30} if "sqlite" in url else {}))

    def fetch(force: bool) -> tuple[str, float]:
        with open(counter, "a") as fh:  # O_APPEND: one line per fetch, whichever process does it
            fh.write(f"{os.getpid()} {force}\n")
        time.sleep(0.3)
        return f"tok-{os.getpid()}-{force}", 7200.0

    barrier.wait(60)  # all four start together
    first = cache.get(key, fetch)
    barrier.wait(60)  # then all four see that token rejected at once
    results.put((first, cache.get(key, fetch, stale=first)))


@pytest.mark.parametrize("store", ["sqlite", "redis", "postgres"])
def test_four_processes_one_fetch(store: str, tmp_path) -> None:
    """Separate processes (spawned, like Celery workers) fetch once, and refresh a rejected token once."""
    import multiprocessing

    if store == "sqlite":
        url = f"sqlite:///{tmp_path / 'tokens.db'}"
        SqlTokenCache(sa.create_engine(url)).create_table()
    elif store == "postgres":
        url = PG_URL
        engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
        try:
            SqlTokenCache(engine).create_table()
        except Exception as exc:
            _unreachable("PostgreSQL", exc)
        engine.dispose()
    else:
        import redis

        url = REDIS_URL
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        except Exception as exc:
            _unreachable("Redis", exc)
    key, counter = _key(), str(tmp_path / "fetches.log")
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(4), mp.Queue()
    procs = [mp.Process(target=_process_worker, args=(store, url, key, counter, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
    with open(counter) as fh:
        lines = fh.read().splitlines()
    assert len({first for first, _ in got}) == 1 and len({second for _, second in got}) == 1
    assert got[0][0] != got[0][1]
    assert len(lines) == 2, lines  # one fetch, one forced refresh, across four processes
    assert lines[0].endswith("False") and lines[1].endswith("True")
    if store == "redis":
        import redis

        client = redis.Redis.from_url(url)
        for k in client.scan_iter("mmtest:proc:*"):
            client.delete(k)
