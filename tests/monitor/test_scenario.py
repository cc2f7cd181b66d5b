"""The monitor through a real Celery worker and beat (embedded: SQLite + the SQLite broker) against the feed sandbox.

Beat's ``monitor.poll_due`` claims due sources and fans out ``monitor.poll_source`` on the monitor's own queue,
which the shared worker consumes. Five sources repost one item matching a rule: it is stored once, hit once,
alerted once; each hostile feed fails alone with its reason while the good ones are stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from channels.sandbox.server import RunningServer, serve_in_thread
from monitor.sandbox import create_app
from tests.monitor.conftest import Feeds
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def feed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Feeds]]:
    feed_server: RunningServer = serve_in_thread(create_app())
    extra = {
        "MATRIX_MONITOR_POLL_INTERVAL_S": "1",
        "MATRIX_MONITOR_HOST_SPACING_S": "0",
        "MATRIX_MONITOR_HOST_CONCURRENCY": "4",
        "MATRIX_MONITOR_DEADLINE_S": "3",
        "MATRIX_MONITOR_TIMEOUT_S": "3",
    }
    stack = Stack("embedded", tmp_path_factory.mktemp("monitor-stack"), extra_env=extra)
    # the feed sandbox alone is allowed (this scenario reaches no platform sandbox)
    stack.extra_env["MATRIX_OUTBOUND_ALLOW"] = f"{feed_server.host}:{feed_server.port}"
    stack.start()
    yield stack, Feeds(feed_server)
    stack.stop()
    feed_server.stop()


def test_reposts_are_stored_once_and_hostile_feeds_fail_alone(feed_stack: tuple[Stack, Feeds], tmp_path: Path) -> None:
    from core.db import session_scope
    from core.notify import Notification
    from monitor import services
    from monitor.models import Alert, Item, RuleHit, Sighting, Source
    from tests.support.people import CITY, make_user

    stack, feeds = feed_stack
    feeds.call("reset")
    monitor = make_user("scenario-monitor", ("monitor", CITY))
    routes = [f"weibo/user/{n}" for n in range(5)]
    feeds.call(
        "repost", routes=routes, title="某厂欠薪", text="某服装厂欠薪三个月，一百多名工人讨薪无果。", edits=False
    )
    for fault in ("malformed", "entities", "trickle", "redirect_private"):
        feeds.call("faults", route=f"bad/{fault}", fault=fault)
    with session_scope() as s:
        actor = monitor.principal
        good = [services.add_source(s, actor, url=feeds.url(r), organization=CITY).id for r in routes]
        bad = {
            f: services.add_source(s, actor, url=feeds.url(f"bad/{f}"), organization=CITY).id
            for f in ("malformed", "entities", "trickle", "redirect_private")
        }
        rule = services.add_rule(s, actor, name="欠薪", query_text="欠薪 OR 拖欠工资", organization=CITY).id

    def all_polled():
        with session_scope() as s:
            rows = s.scalars(select(Source).where(Source.id.in_(good + list(bad.values())))).all()
            return all(r.fetch_count >= 1 for r in rows)

    stack.wait_for(all_polled, timeout=90, what="every source polled by the worker")
    with session_scope() as s:
        items = s.scalars(select(Item).where(Item.title == "某厂欠薪")).all()
        assert len(items) == 1
        assert s.scalar(select(func.count()).select_from(Sighting).where(Sighting.item_id == items[0].id)) == 5
        assert s.scalar(select(func.count()).select_from(RuleHit).where(RuleHit.rule_id == rule)) == 1
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.rule_id == rule)) == 1
        assert s.scalar(select(func.count()).select_from(Notification).where(Notification.kind == "monitor.alert")) == 1
        reasons = {f: s.get(Source, i).last_error or "" for f, i in bad.items()}
        assert "malformed feed" in reasons["malformed"]
        assert "declares XML entities" in reasons["entities"]
        assert "took over 3 s" in reasons["trickle"]
        assert "link-local" in reasons["redirect_private"]
        assert all(s.get(Source, i).failures == 0 for i in good)
