"""Many sources in one poll (``poll_sources``): the same stored result as one poll after another, hostile feeds
failing alone, each host's limits held; and the per-host limits and leases of the gate."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from core import ratelimit
from core.db import get_engine, session_scope
from monitor import services
from monitor.errors import HostBusy
from monitor.fetch import HostGate, make_client
from monitor.models import Alert, Item, RuleHit, Sighting, Source, Story
from monitor.pipeline import poll_source, poll_sources
from monitor.settings import MonitorSettings, parse_host_limits
from tests.monitor.conftest import Feeds
from tests.monitor.test_pipeline import HOSTILE
from tests.support.people import CITY, Person
from tests.support.stack import migrated_pg_installation


def _source(person: Person, url: str) -> int:
    with session_scope() as s:
        return services.add_source(s, person.principal, url=url, organization=CITY).id


def _rule(person: Person, query: str) -> int:
    with session_scope() as s:
        return services.add_rule(s, person.principal, name=query[:20], query_text=query, organization=CITY).id


def _counts() -> dict[str, int]:
    with session_scope() as s:
        return {
            m.__name__: s.scalar(select(func.count()).select_from(m)) or 0
            for m in (Item, Story, Sighting, RuleHit, Alert)
        }


def _story_sizes() -> list[int]:
    with session_scope() as s:
        return sorted(s.scalars(select(Story.item_count)))


def _fill(feeds: Feeds, routes: list[str]) -> None:
    text = "某物流公司拖欠三十名员工两个月工资，员工多次讨要无果，希望工会出面协调解决。"
    feeds.call("repost", routes=routes[:4], title="物流公司拖欠工资", text=text, edits=True, seed=7)
    for n, route in enumerate(routes):
        feeds.call("items", route=route, items=[{"title": f"职工书屋第{n}期", "text": f"新到图书{n}00册，欢迎借阅。"}])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def backend(request: pytest.FixtureRequest, env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The installation of ``env`` on each backend: PostgreSQL reads a band's newest rows by another statement
    (a LATERAL join over one array) than SQLite (a UNION ALL), and both must cluster alike."""
    if request.param == "postgresql":
        with migrated_pg_installation(monkeypatch):
            yield request.param
    else:
        yield request.param


@pytest.mark.parametrize("batched", [False, True])
def test_one_batch_stores_what_one_poll_after_another_stores(
    backend: str, people: dict[str, Person], feeds: Feeds, settings: MonitorSettings, batched: bool
) -> None:
    routes = [f"weibo/keyword/batch{n}" for n in range(6)]
    _fill(feeds, routes)
    ids = [_source(people["city"], feeds.url(r)) for r in routes]
    rule = _rule(people["city"], "拖欠 NEAR/4 工资")
    if batched:
        outcomes = poll_sources(ids, settings=settings)
    else:
        outcomes = [poll_source(i, settings=settings) for i in ids]
    assert [o.status for o in outcomes] == ["new"] * 6
    assert [o.source_id for o in outcomes] == ids
    # the same counts either way: ten entries, two of the four retellings alike once normalised (one item, two
    # sightings), the retellings one story with one hit per item and one alert, six stories of one book notice
    assert _counts() == {"Item": 9, "Story": 7, "Sighting": 10, "RuleHit": 3, "Alert": 1}
    assert _story_sizes() == [1, 1, 1, 1, 1, 1, 3]
    assert sum(o.alerts for o in outcomes) == 1 and sum(o.rule_hits for o in outcomes) == 3
    assert sum(o.new_items for o in outcomes) == 9 and sum(o.sightings for o in outcomes) == 1
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(RuleHit).where(RuleHit.rule_id == rule)) == 3
        assert {src.fetch_count for src in s.scalars(select(Source))} == {1}
    # a second batch: every answer a 304, nothing parsed or stored again
    again = poll_sources(ids, settings=settings)
    assert {o.status for o in again} == {"not_modified"}
    assert _counts()["Sighting"] == 10


def test_in_a_batch_each_hostile_feed_fails_alone_and_the_others_are_stored(
    people: dict[str, Person], feeds: Feeds, settings: MonitorSettings
) -> None:
    bad = {}
    for fault in HOSTILE:
        route = f"hostile/{fault}"
        feeds.call("faults", route=route, fault=fault)
        bad[fault] = _source(people["city"], feeds.url(route))
    good = [_source(people["city"], feeds.url(f"weibo/keyword/好{n}")) for n in range(3)]
    outcomes = {o.source_id: o for o in poll_sources([*bad.values(), *good], settings=settings)}
    for fault, sid in bad.items():
        assert outcomes[sid].status == "failed", (fault, outcomes[sid])
        assert re.search(HOSTILE[fault], outcomes[sid].error), (fault, outcomes[sid].error)
    assert [outcomes[g].status for g in good] == ["new"] * 3
    # three posts each: new items, or sightings of one another's (normal days draw on the same topics)
    assert all(outcomes[g].new_items + outcomes[g].sightings == 3 for g in good)
    assert sum(outcomes[g].new_items for g in good) >= 3


def test_a_batch_keeps_the_host_limit_and_defers_what_it_cannot_reach(
    people: dict[str, Person], feeds: Feeds, settings: MonitorSettings
) -> None:
    ids = [_source(people["city"], feeds.url(f"weibo/keyword/限{n}")) for n in range(6)]
    host = feeds.server.url.split("//", 1)[1]
    limited = settings.model_copy(update={"host_limits": f"{host}=2/0", "poll_threads": 8})
    in_flight, peak, lock = 0, 0, threading.Lock()

    def sent(_request: httpx.Request) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)  # long enough for the lanes to overlap if the gate let them

    def answered(_response: httpx.Response) -> None:
        nonlocal in_flight
        with lock:
            in_flight -= 1

    with make_client(limited) as client:
        client.event_hooks = {"request": [sent], "response": [answered]}
        outcomes = poll_sources(ids, settings=limited, client=client, gate=_gate(limited))
    assert [o.status for o in outcomes] == ["new"] * 6
    assert peak == 2  # six feeds, eight threads: two lanes, as the host's limit says
    # every slot of the host held elsewhere: the whole batch is deferred, not failed, and nothing is fetched
    feeds.call("clock", advance_s=3600)
    busy = _gate(limited, max_wait_s=0.2)
    with busy.lease(host), busy.lease(host):
        deferred = poll_sources(ids, settings=limited, gate=busy)
    assert {o.status for o in deferred} == {"deferred"}
    with session_scope() as s:
        assert all(src.failures == 0 and src.claimed_until is None for src in s.scalars(select(Source)))
        assert {src.fetch_count for src in s.scalars(select(Source))} == {1}


def _gate(settings: MonitorSettings, max_wait_s: float = 5.0) -> HostGate:
    engine = get_engine()
    return HostGate(
        engine,
        ratelimit.SqlLimiter(engine),
        concurrency=settings.host_concurrency,
        spacing_s=settings.host_spacing_s,
        limits=settings.host_limits_parsed(),
        max_wait_s=max_wait_s,
    )


def test_host_limits_name_their_hosts_and_every_other_host_keeps_the_defaults(people: dict[str, Person]) -> None:
    assert parse_host_limits("RSSHub.local:1200=8/0, b=4/0.25") == {"rsshub.local:1200": (8, 0.0), "b": (4, 0.25)}
    for bad in ("x=8", "x=0/0", "=2/0", "x=2/-1", "x=a/b"):
        with pytest.raises(ValueError, match="host_limits"):
            parse_host_limits(bad)
    settings = MonitorSettings(host_limits="mine:1200=3/0")
    gate = _gate(settings)
    assert gate.limits_for("mine:1200") == (3, 0.0)
    assert gate.limits_for("stranger.example") == (settings.host_concurrency, settings.host_spacing_s) == (2, 0.5)
    # the named host takes three leases at once; a fourth waits, then is refused (wait=False: at once)
    with gate.lease("mine:1200"), gate.lease("mine:1200"), gate.lease("mine:1200"):
        with pytest.raises(HostBusy, match="3 requests in flight"):
            with gate.lease("mine:1200", wait=False):
                pass
    with gate.lease("mine:1200"):  # released: free again
        pass
