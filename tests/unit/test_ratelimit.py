"""The shared rate limiter: one account's pace holds across adapter instances, processes and stores.

The same checks run on every store: SQLite (the embedded default), PostgreSQL and Redis (production). The
PostgreSQL and Redis cases are ``services`` tests: skipped when the servers are unreachable, unless
``MATRIX_TEST_REQUIRE_SERVICES=1`` (CI), which fails them instead. Paces are high (20 calls/s) or the clock
is injected, so no test waits long.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry

from channels.base import AccountInfo
from channels.errors import RateLimited
from core.db import engine_for
from core.ratelimit import RateLimit, RateLimitExceeded, RedisLimiter, SqlLimiter
from core.settings import reset_settings
from publisher.services.channels import limiter, make_channel
from tests.support.stack import PG_ADMIN_URL, REDIS_URL, REPO, require_services

RATE = 20.0  # calls per second: 50 ms apart, fast enough for tests, slow enough to measure
SLACK = 0.01  # seconds of clock granularity allowed below an exact bound


def _key() -> str:
    return f"test:{uuid.uuid4().hex[:12]}"


# A store spec is what a separate process needs to build its own limiter over the same store.
StoreSpec = tuple[str, str, str]  # (backend, url, redis key prefix)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.services),
        pytest.param("redis", marks=pytest.mark.services),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[StoreSpec]:
    backend = request.param
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'limits.db'}"
        SqlLimiter(engine_for(url)).create_table()
        yield backend, url, ""
    elif backend == "postgres":
        require_services()
        engine = sa.create_engine(PG_ADMIN_URL)
        SqlLimiter(engine).create_table()
        yield backend, PG_ADMIN_URL, ""
        with engine.begin() as conn:
            conn.execute(sa.delete(RateLimit).where(RateLimit.key.like("test:%")))
        engine.dispose()
    else:
        require_services()
        prefix = f"mmtest:{uuid.uuid4().hex}:"
        yield backend, REDIS_URL, prefix
        client = redis.Redis.from_url(REDIS_URL)
        for k in client.scan_iter(f"{prefix}*"):
            client.delete(k)
        client.close()


def _limiter(spec: StoreSpec, **kwargs):
    backend, url, prefix = spec
    if backend == "redis":
        return RedisLimiter(redis.Redis.from_url(url), prefix=prefix, **kwargs)
    return SqlLimiter(sa.create_engine(url) if backend == "postgres" else engine_for(url), **kwargs)


# ------------------------------------------------------------------------------ through make_channel


@pytest.mark.parametrize("kind", ["toutiao", "website"])
def test_channels_built_for_one_account_share_its_pace(env, kind: str) -> None:
    """Every delivery builds its own channel; the account's pace must hold across them all."""
    info = AccountInfo(id=7, kind=kind, name="a", credentials={}, config={"base_url": "http://127.0.0.1:9"})
    first, second = make_channel(info), make_channel(info)
    key = f"{kind}:{info.id}"
    start = time.monotonic()
    for channel in (first, second) * 3:
        channel.limiter.acquire(key, RATE)
    elapsed = time.monotonic() - start
    first.close()
    second.close()
    assert elapsed >= 5 / RATE - SLACK, f"6 calls at {RATE}/s took {elapsed:.3f} s: the channels do not share a limit"
    assert first.limiter is second.limiter is limiter()


def test_a_request_reserves_the_platforms_pace_for_the_next_delivery(env) -> None:
    """Channel.request takes a slot at Toutiao's own pace (a person's: 0.5/s) in the process-wide store."""
    info = AccountInfo(id=8, kind="toutiao", name="t", credentials={}, config={"base_url": "http://console.test"})
    channel = make_channel(info)
    channel.client.close()
    channel.client = httpx.Client(transport=httpx.MockTransport(lambda _request: httpx.Response(200, json={})))
    before = time.time()
    channel.request("GET", "http://console.test/ping")
    channel.close()
    next_at = make_channel(info).limiter.next_at("toutiao:8")
    assert next_at is not None
    assert before + 1 / channel.rate_per_second - SLACK <= next_at <= time.time() + 1 / channel.rate_per_second


def test_a_call_that_would_wait_too_long_is_refused_as_rate_limited(env) -> None:
    """The publisher's limiter raises the channels' RateLimited, so the delivery is retried, not blocked."""
    shared = limiter()
    key = _key()
    waits = [shared.reserve(key, 0.5) for _ in range(3)]  # slots 0, 2 and 4 s away; 5 s is the bound
    assert waits[0] == pytest.approx(0, abs=0.05)
    assert waits[1:] == pytest.approx([2.0, 4.0], abs=0.05)
    with pytest.raises(RateLimited) as caught:
        shared.reserve(key, 0.5)
    assert caught.value.retry_after == pytest.approx(6.0, abs=0.05)


@pytest.mark.services
def test_production_injects_the_redis_limiter(env, monkeypatch) -> None:
    require_services()
    monkeypatch.setenv("MATRIX_BROKER_URL", REDIS_URL)
    reset_settings()
    info = AccountInfo(id=9, kind="website", name="w", credentials={}, config={"base_url": "http://127.0.0.1:9"})
    with make_channel(info) as first, make_channel(info) as second:
        assert isinstance(first.limiter, RedisLimiter)
        assert first.limiter is second.limiter


# --------------------------------------------------------------------------------- every store


# A separate process with its own limiter over the store (and nothing else of ours imported).
_CHILD = """
import sys, time
import redis, sqlalchemy as sa
from core.db import engine_for
from core.ratelimit import RedisLimiter, SqlLimiter
(backend, url, prefix), key, rate, n = sys.argv[1:4], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
if backend == "redis":
    limiter = RedisLimiter(redis.Redis.from_url(url), prefix=prefix, max_wait_s=30)
else:
    limiter = SqlLimiter(sa.create_engine(url) if backend == "postgres" else engine_for(url), max_wait_s=30)
limiter.next_at(key)  # connected before the start signal
print("ready", flush=True)
sys.stdin.readline()
for _ in range(n):
    limiter.acquire(key, rate)
    print(time.time(), flush=True)
"""


def test_the_pace_holds_across_processes(store: StoreSpec) -> None:
    """Two processes, started together, share one key: N calls at rate r take at least (N - 1) / r."""
    key, per_process = _key(), 5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, *store, key, str(RATE), str(per_process)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        start = time.time()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=30)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    stamps = sorted(float(line) for out in outputs for line in out.split())
    n = 2 * per_process
    assert len(stamps) == n
    elapsed = stamps[-1] - start
    assert elapsed >= (n - 1) / RATE - SLACK, f"{n} calls at {RATE}/s took {elapsed:.3f} s across 2 processes"
    assert elapsed < (n - 1) / RATE + 2.0  # spaced, not serialised behind something slower


def test_the_pace_holds_across_threads_with_their_own_limiters(store: StoreSpec) -> None:
    """Four threads, each with its own limiter instance (and, on SQL, engine) over one store."""
    key, threads, per_thread = _key(), 4, 3
    limiters = [_limiter(store, max_wait_s=30) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(lim) -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                lim.acquire(key, RATE)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(lim,)) for lim in limiters]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    elapsed = time.monotonic() - start
    assert not errors
    n = threads * per_thread
    assert elapsed >= (n - 1) / RATE - SLACK


def test_over_long_waits_are_refused_without_taking_a_slot(store: StoreSpec) -> None:
    lim = _limiter(store, max_wait_s=0.5)
    key = _key()
    assert lim.reserve(key, 1.0) == pytest.approx(0, abs=0.05)
    reserved = lim.next_at(key)
    with pytest.raises(RateLimitExceeded) as caught:
        lim.acquire(key, 1.0)  # 1 s away, over the 0.5 s bound: refused at once
    assert caught.value.retry_after == pytest.approx(1.0, abs=0.1)
    assert lim.next_at(key) == pytest.approx(reserved)  # the refusal took no slot


def test_no_limit_means_no_wait_and_nothing_stored(store: StoreSpec) -> None:
    lim = _limiter(store)
    key = _key()
    for _ in range(5):
        assert lim.reserve(key, 0) == 0.0
    assert lim.next_at(key) is None


# -------------------------------------------------------------------------------- the algorithm


class FakeClock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def test_slots_are_reserved_one_interval_apart_and_refusals_take_none(tmp_path) -> None:
    clock = FakeClock()
    lim = SqlLimiter(engine_for(f"sqlite:///{tmp_path / 'l.db'}"), clock=clock, sleep=clock.sleep, max_wait_s=1.0)
    lim.create_table()
    key = _key()
    assert [lim.reserve(key, 1.0), lim.reserve(key, 1.0)] == [0.0, 1.0]
    with pytest.raises(RateLimitExceeded) as caught:
        lim.reserve(key, 1.0)
    assert caught.value.retry_after == 2.0
    assert lim.next_at(key) == 1_002.0  # unchanged by the refusal
    clock.t += 1.5
    lim.acquire(key, 1.0)  # its slot is 1002.0, half a second away: waits for it
    assert clock.slept == [0.5]
    assert lim.next_at(key) == 1_003.0
    clock.t += 60  # idle: the next call goes at once, with no burst banked for the idle time
    assert [lim.reserve(key, 1.0), lim.reserve(key, 1.0)] == [0.0, 1.0]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_an_unreachable_store_is_a_transient_refusal(tmp_path, backend: str) -> None:
    """No request has gone out, so the delivery may simply be retried."""
    if backend == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'l.db'}")  # a folder that is not there
        lim = SqlLimiter(engine, error=RateLimited)
    else:
        client = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
        lim = RedisLimiter(client, error=RateLimited)
    with pytest.raises(RateLimited, match="unavailable") as caught:
        lim.acquire(_key(), 1.0)
    assert caught.value.retry_after is None


def test_the_refusal_survives_pickling() -> None:
    exc = pickle.loads(pickle.dumps(RateLimitExceeded("slow down", retry_after=2.5)))
    assert (str(exc), exc.retry_after) == ("slow down", 2.5)
